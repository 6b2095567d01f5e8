#!/usr/bin/env python3
"""What tracemalloc costs the traced root while it preloads, by traceback depth.

    python bench/bench_trace_price.py [--python PATH ...] [--sizes 300000,2000000] [--repeat 3]

The target builds fixtures/preload_list.py's data (`list(range(size))`, then
payload_bytes's sum over it) with the agent's Tracer started as `--trace-sites=FRAMES` does
it, and prints the process CPU time of the preload. Rows: untraced, FRAMES=1, FRAMES=16 (the
default). Medians of --repeat runs, interleaved (this machine is shared and loaded: compare
ratios, not seconds).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TARGET = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from memscope.agent._tracing import Tracer
size, frames = int(sys.argv[2]), int(sys.argv[3])
if frames:
    Tracer().start(frames, os.getpid())
t0 = time.process_time()
data = list(range(size))
total = sys.getsizeof(data) + sum(map(sys.getsizeof, data))
print(time.process_time() - t0)
"""


def once(python: str, size: int, frames: int) -> float:
    out = subprocess.run([python, "-c", TARGET, str(REPO), str(size), str(frames)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=None)
    parser.add_argument("--sizes", default="300000,2000000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("python | objects | untraced CPU | --trace-sites=1 | --trace-sites (16 frames)")
    for python in args.python or [sys.executable]:
        for size in (int(s) for s in args.sizes.split(",")):
            runs: dict[int, list[float]] = {0: [], 1: [], 16: []}
            for _ in range(args.repeat):
                for frames in runs:
                    runs[frames].append(once(python, size, frames))
            base, one, full = (statistics.median(runs[f]) for f in (0, 1, 16))
            print(f"{python} | {size:,} | {base:.2f} s | {one:.2f} s ({one / base:.0f}x) | "
                  f"{full:.2f} s ({full / base:.0f}x)", flush=True)


if __name__ == "__main__":
    main()
