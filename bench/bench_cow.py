#!/usr/bin/env python3
"""COW forensics cost vs the kernel floor and vs an in-process gc.get_objects() walk.

    python bench/bench_cow.py [--python PATH ...] [--repeat 5] [--walk-cap 200000]

For each target CPython (default: every pyenv 3.8-3.13 found), a worker forked from a parent
holding 2M ints iterates them, copying ~62 MiB (tests/cow/workloads.py "ints"). Then:

- floor: read the worker's pagemap over its private writable mappings and every copied page
  from /proc/PID/mem (what any out-of-process forensics must at least do);
- forensics: memscope's full scan (both pagemaps, classes, child and parent copied pages,
  heap parse, causes, types), cold (first scan in this process) and warm (median);
- gc walk: what an in-process attribution would cost: a walk from gc.get_objects() through
  gc.get_referents() that types and sizes every object, run inside a copy of the workload.
  The walk is capped at --walk-cap objects and *extrapolated* to the process's object count
  (gc-tracked objects + the 2M untracked ints): labelled as such in the output. (Run inside a
  worker it would also copy every page it visits.)
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from memscope.cow.classify import classify, detect_mode  # noqa: E402
from memscope.cow.pagemap import (  # noqa: E402
    decode_pagemap,
    page_addresses,
    private_writable,
    read_pagemap,
    read_pages,
)
from memscope.cow.scan import scan_process  # noqa: E402
from memscope.procfs import ProcFS  # noqa: E402

WORKLOADS = REPO / "tests" / "cow" / "workloads.py"
PYENV = Path("/root/.pyenv/versions")

WALK = r"""
import gc, sys, time
data = list(range(10**9, 10**9 + 2000000))
cap = int(sys.argv[1])
t0 = time.perf_counter()
roots = gc.get_objects()
seen = set()
stack = list(roots)
sizes = {}
while stack and len(seen) < cap:
    obj = stack.pop()
    if id(obj) in seen:
        continue
    seen.add(id(obj))
    name = type(obj).__name__
    sizes[name] = sizes.get(name, 0) + sys.getsizeof(obj)
    stack.extend(gc.get_referents(obj))
elapsed = time.perf_counter() - t0
total = len(roots) + len(data)
print(len(seen), elapsed, total)
"""


def floor_once(fs: ProcFS, child: int, parent: int) -> tuple[float, int]:
    """Seconds to read the child's pagemap and its copied pages (classes from a prior pass)."""
    regions = private_writable(fs.maps(child))
    addrs, _ = page_addresses(regions)
    # Which pages are copied is decided outside the timed part (it needs the parent too).
    c = decode_pagemap(addrs, read_pagemap(fs, child, regions))
    p = decode_pagemap(addrs, read_pagemap(fs, parent, regions))
    copied = addrs[classify(c, p, detect_mode(c)) == 2]
    t0 = time.perf_counter()
    regions = private_writable(fs.maps(child))
    addrs, _ = page_addresses(regions)
    decode_pagemap(addrs, read_pagemap(fs, child, regions))
    read_pages(fs, child, copied)
    return time.perf_counter() - t0, len(copied) * 4096


def gc_walk(python: str, cap: int) -> tuple[int, float, int]:
    out = subprocess.run([python, "-c", WALK, str(cap)], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), float(out[1]), int(out[2])


def bench(python: str, repeat: int, cap: int) -> dict[str, Any]:
    proc = subprocess.Popen([python, str(WORKLOADS), "ints"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    parent, child, _ = proc.stdout.readline().split()
    ppid, pid = int(parent), int(child)
    fs = ProcFS()
    try:
        time.sleep(0.2)
        cold = scan_process(pid, ppid, fs)
        runs = [scan_process(pid, ppid, fs) for _ in range(repeat)]
        warm = [r.duration_s for r in runs]
        phases = {k: statistics.median(r.timings[k] for r in runs) for k in runs[0].timings}
        floors = [floor_once(fs, pid, ppid) for _ in range(repeat)]
    finally:
        os.kill(pid, signal.SIGKILL)
        proc.wait()
    visited, walk_s, total = gc_walk(python, cap)
    floor = statistics.median(f[0] for f in floors)
    scan = statistics.median(warm)
    walk_extrapolated = walk_s * total / max(visited, 1)
    return {
        "copied_mib": cold.copied_bytes / 2**20,
        "int_share": next(t.bytes for t in cold.by_type if t.type == "int") / cold.copied_bytes,
        "floor_ms": floor * 1000,
        "scan_cold_ms": cold.duration_s * 1000,
        "scan_ms": scan * 1000,
        "ratio": scan / floor,
        "walk_visited": visited,
        "walk_s": walk_s,
        "walk_total": total,
        "walk_extrapolated_s": walk_extrapolated,
        "walk_ratio": walk_extrapolated / scan,
        "phases": " ".join(f"{k} {v * 1000:.0f}" for k, v in phases.items()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", default=None,
                        help="target interpreter (repeatable) [default: pyenv 3.8-3.13]")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--walk-cap", type=int, default=200_000)
    args = parser.parse_args()
    pythons = args.python or sorted(
        str(p / "bin" / "python3") for p in PYENV.glob("3.1[0-3]*")
    ) + sorted(str(p / "bin" / "python3") for p in PYENV.glob("3.[89].*"))
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, repeat {args.repeat}; times are"
          " medians (scan_cold: first scan in this process)")
    header = ("python", "copied", "int%", "floor", "scan", "scan/floor", "scan_cold",
              "gc walk (capped)", "gc walk extrapolated", "walk/scan")
    print(" | ".join(header))
    for python in pythons:
        r = bench(python, args.repeat, args.walk_cap)
        parts = python.split("/")  # pyenv: .../3.12.1/bin/python3; Debian: .../3.14/usr/bin/...
        version = parts[-4] if parts[-3] == "usr" else parts[-3]
        print(
            f"{version} | {r['copied_mib']:.1f} MiB | {r['int_share']:.1%} | "
            f"{r['floor_ms']:.0f} ms | {r['scan_ms']:.0f} ms | {r['ratio']:.1f}x | "
            f"{r['scan_cold_ms']:.0f} ms | {r['walk_visited']:,} objs in {r['walk_s']:.2f} s | "
            f"~{r['walk_extrapolated_s']:.1f} s for {r['walk_total']:,} objs (extrapolated) | "
            f"~{r['walk_ratio']:.0f}x",
            flush=True,
        )
        print(f"    scan phases (ms): {r['phases']}", flush=True)


if __name__ == "__main__":
    main()
