#!/usr/bin/env python3
"""What a forked worker's exit costs under --trace-sites, against an untraced parent.

    python bench/bench_trace_exit.py [--python PATH ...] [--objects 2000000] [--repeat 3]

A parent (the target CPython) holds N objects; traced parents run the agent's Tracer (as
`memscope run --trace-sites` does), so tracemalloc's tables hold one trace per object. Each
worker forks, detaches as the agent does at fork, touches nothing, and exits through normal
interpreter finalization (sys.exit, as gunicorn's workers do). Per worker the parent takes,
from os.wait4: the wall time from "exit now" to reaped, the minor faults (each COW copy of
a page is one) and the peak RSS. Rows:

- untraced: the reference;
- traced, teardown skipped: what the agent does now (Tracer.skip_teardown at exit);
- traced, teardown run: the agent before the fix: finalization frees every trace, writing
  into every page of tracemalloc's tables and so copying them.
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
n, mode, repeat = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
tracer = Tracer()
if mode != "untraced":
    tracer.start(1, os.getpid())
data = [str(i) for i in range(n)]
for _ in range(repeat):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        tracer.detach_in_child()
        if mode == "teardown":
            tracer.skip_teardown = lambda: None  # the former behaviour: let Fini free traces
        os.close(w)
        os.read(r, 1)
        sys.exit(0)
    os.close(r)
    time.sleep(0.2)
    t0 = time.perf_counter()
    os.write(w, b"x")
    _, status, usage = os.wait4(pid, 0)
    print(time.perf_counter() - t0, usage.ru_minflt, usage.ru_maxrss, tracer.mode, flush=True)
"""


def run(python: str, n: int, mode: str, repeat: int) -> list[tuple[float, int, int]]:
    out = subprocess.run([python, "-c", TARGET, str(REPO), str(n), mode, str(repeat)],
                         capture_output=True, text=True, check=True).stdout
    return [(float(a), int(b), int(c)) for a, b, c, _ in (line.split() for line in
                                                           out.splitlines())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=None)
    parser.add_argument("--objects", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.objects:,} str objects; worker exit medians of {args.repeat}")
    print("python | parent | exit wall | minor faults (page copies) | worker peak RSS (shared pages included)")
    for python in args.python or [sys.executable]:
        for mode, label in (("untraced", "untraced"), ("skip", "traced, teardown skipped"),
                            ("teardown", "traced, teardown run")):
            got = run(python, args.objects, mode, args.repeat)
            print(f"{python} | {label} | {statistics.median(g[0] for g in got) * 1000:.0f} ms | "
                  f"{statistics.median(g[1] for g in got):,.0f} | "
                  f"{statistics.median(g[2] for g in got) / 1024:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
