#!/usr/bin/env python3
"""COW scan cost and memory from 16 MiB to 1 GiB copied, and with a traced parent.

    python bench/bench_scan_scale.py sweep [--sizes 16,64,256,1024] [--repeat 3]
    python bench/bench_scan_scale.py traced [--ints 2000000] [--repeat 3] [--scans 2]
    python bench/bench_scan_scale.py peaks [--sizes 16,64,256] [--slices 8192,256] [--repeat 2]

A parent (the --python CPython, default this one) builds a list of ints and forks; the worker
iterates it, copying the pages that hold the ints (~32 bytes each: N MiB copied needs
N * 32768 ints). Each measurement runs in a fresh interpreter (`one`) that scans the worker twice and prints
the wall and phase times of the second scan (the first also detects the interpreter and
builds the parent's heap index, as the first scan of a run does), and its peak RSS (ru_maxrss: the whole scanning process, numpy and memscope's
imports included; VmHWM). The floor is reading the worker's pagemap and every copied page
(through a reused buffer), timed in this process, interleaved with the scans.

- sweep: scan time / floor and the scanner's peak RSS per copied size (goal: <= 5x, < 256 MiB).
- peaks: what one scan adds to memscope's RSS, per copied size and slice size
  (scan_slices.SLICE_PAGES): in a fresh interpreter with memscope's allocator settings
  (memscope._malloc.return_freed_buffers), after a first scan, VmHWM is reset
  (/proc/self/clear_refs) and the worker scanned 5 times: the peak above the RSS before,
  the RSS kept after, the median CPU (process time) of a scan. Slice sizes interleave.
- traced: the parent runs tracemalloc (as under --trace-sites), so its `[heap]` holds one
  malloc chunk per trace; scans with the parent's heap index (memscope.cow.heap_index) and
  without it (the former walk of `[heap]` from its start) are interleaved; an untraced parent
  with the same data is the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

WORKLOAD = r"""
import os, signal, sys, tracemalloc
n, traced = int(sys.argv[1]), sys.argv[2] == "1"
if traced:
    tracemalloc.start(1)
ints = list(range(10**9, 10**9 + n))
pid = os.fork()
if pid == 0:
    signal.alarm(900)
    for _ in ints:
        pass
    print(os.getppid(), os.getpid(), flush=True)
    signal.pause()
os.waitpid(pid, 0)
"""


def one(pid: int, ppid: int, no_index: bool, scans: int = 2) -> None:
    """Child mode: `scans` scans, the first and the last printed as JSON."""
    import memscope.cow.scan as scan_mod

    if no_index:
        scan_mod.heap_index_for = lambda *_: None  # type: ignore[attr-defined]
    first = result = scan_mod.scan_process(pid, ppid)  # builds the parent's heap index
    for _ in range(scans - 1):  # as later scans of this parent's workers (the index grows
        result = scan_mod.scan_process(pid, ppid)  # by at most WALK_BUDGET chunks a parse)
    print(json.dumps({
        "first_s": first.duration_s,
        "first_heap_s": first.timings["heap"],
        "s": result.duration_s,
        "copied": result.copied_bytes,
        "laps": result.timings,
        "rss_mib": _peak_rss_mib(),
        "int_share": sum(t.bytes for t in result.by_type if t.type == "int")
        / max(result.copied_bytes, 1),
    }))


def one_peak(pid: int, ppid: int, slice_pages: int) -> None:
    """Child mode: the scan's peak and CPU with `slice_pages` slices, printed as JSON."""
    from memscope._malloc import return_freed_buffers

    return_freed_buffers()  # as memscope.session.record does
    import memscope.cow.scan as scan_mod
    import memscope.cow.scan_slices as slices_mod

    slices_mod.SLICE_PAGES = slice_pages
    scan_mod.scan_process(pid, ppid)  # detects the interpreter, indexes the parent's heap
    before = _status_mib("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    cpu = []
    for _ in range(5):
        t0 = time.process_time()
        result = scan_mod.scan_process(pid, ppid)
        cpu.append(time.process_time() - t0)
    print(json.dumps({"copied": result.copied_bytes, "peak_mib": _status_mib("VmHWM:") - before,
                      "kept_mib": _status_mib("VmRSS:") - before,
                      "cpu_s": statistics.median(cpu)}))


def peaks(python: str, sizes: list[int], slice_sizes: list[int], repeat: int) -> None:
    print("copied | slice pages | scan peak above RSS | kept after | CPU per scan")
    for mib in sizes:
        proc, ppid, pid = start(python, mib * 32768, False)
        try:
            for _ in range(repeat):
                for pages in slice_sizes:
                    cmd = [sys.executable, __file__, "one-peak", str(pid), str(ppid),
                           "--slice-pages", str(pages)]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                    got = json.loads(out.splitlines()[-1])
                    print(f"{got['copied'] / 2**20:.0f} MiB | {pages} | +{got['peak_mib']:.1f} MiB"
                          f" | {got['kept_mib']:+.1f} MiB | {got['cpu_s'] * 1000:.0f} ms",
                          flush=True)
        finally:
            stop(proc, pid)


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024


def _peak_rss_mib() -> float:
    """VmHWM: the peak RSS of this process image (ru_maxrss would carry the peak of the
    process that forked us across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def floor_once(pid: int, ppid: int) -> float:
    """Seconds to read the worker's pagemap and every copied page (through a reused 1 MiB
    buffer, so the floor pays no page faults for a copy of them): what any out-of-process
    forensics must at least do. Which pages are copied is decided outside the timed part."""
    from memscope.cow.classify import classify, detect_mode
    from memscope.cow.pagemap import (
        decode_pagemap,
        iter_pages,
        page_addresses,
        private_writable,
        read_pagemap,
    )
    from memscope.procfs import ProcFS

    fs = ProcFS()
    regions = private_writable(fs.maps(pid))
    addrs, _ = page_addresses(regions)
    child = decode_pagemap(addrs, read_pagemap(fs, pid, regions))
    parent = decode_pagemap(addrs, read_pagemap(fs, ppid, regions))
    copied = addrs[classify(child, parent, detect_mode(child)) == 2]
    t0 = time.perf_counter()
    regions = private_writable(fs.maps(pid))
    addrs, _ = page_addresses(regions)
    decode_pagemap(addrs, read_pagemap(fs, pid, regions))
    for _ in iter_pages(fs, pid, copied):
        pass
    return time.perf_counter() - t0


def scan_in_child(pid: int, ppid: int, no_index: bool = False, scans: int = 2) -> dict[str, Any]:
    cmd = ([sys.executable, __file__, "one", str(pid), str(ppid), "--scans", str(scans)]
           + (["--no-index"] * no_index))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.splitlines()[-1]))


def start(python: str, n: int, traced: bool) -> tuple[subprocess.Popen[str], int, int]:
    proc = subprocess.Popen([python, "-c", WORKLOAD, str(n), "1" if traced else "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ppid, pid = (int(x) for x in proc.stdout.readline().split())
    return proc, ppid, pid


def stop(proc: subprocess.Popen[str], pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    proc.wait()


def sweep(python: str, sizes: list[int], repeat: int) -> None:
    print("copied | floor | scan | scan/floor | peak RSS of the scanner | int share | phases")
    for mib in sizes:
        proc, ppid, pid = start(python, mib * 32768, False)
        try:
            floors, scans = [], []
            for _ in range(repeat):  # interleaved: floor, scan, floor, scan ...
                floors.append(floor_once(pid, ppid))
                scans.append(scan_in_child(pid, ppid))
        finally:
            stop(proc, pid)
        floor = statistics.median(floors)
        scan = statistics.median(s["s"] for s in scans)
        rss = max(s["rss_mib"] for s in scans)
        laps = " ".join(f"{k} {statistics.median(s['laps'][k] for s in scans) * 1000:.0f}"
                        for k in scans[0]["laps"])
        print(f"{scans[0]['copied'] / 2**20:.0f} MiB | {floor * 1000:.0f} ms | "
              f"{scan * 1000:.0f} ms | {scan / floor:.1f}x | {rss:.0f} MiB | "
              f"{scans[0]['int_share']:.1%} | {laps}", flush=True)


def traced(python: str, n: int, repeat: int, scans: int) -> None:
    print(f"{n:,} ints; scan medians of {repeat}, interleaved; later = scan {scans} of one"
          " scanner")
    print("parent | heap index | first scan (heap) | later scans (heap) | peak RSS | int share")
    for is_traced in (False, True):
        t0 = time.perf_counter()
        proc, ppid, pid = start(python, n, is_traced)
        setup = time.perf_counter() - t0
        try:
            runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
            for _ in range(repeat):
                for use_index in ((True, False) if is_traced else (True,)):
                    runs[use_index].append(scan_in_child(pid, ppid, not use_index,
                                                         scans if use_index else 2))
        finally:
            stop(proc, pid)
        for use_index, got in runs.items():
            if not got:
                continue
            print(f"{'traced' if is_traced else 'untraced'} (setup {setup:.1f} s) | "
                  f"{'yes' if use_index else 'no (walk from heap start)'} | "
                  f"{statistics.median(r['first_s'] for r in got) * 1000:.0f} ms "
                  f"({statistics.median(r['first_heap_s'] for r in got) * 1000:.0f} ms) | "
                  f"{statistics.median(r['s'] for r in got) * 1000:.0f} ms "
                  f"({statistics.median(r['laps']['heap'] for r in got) * 1000:.0f} ms) | "
                  f"{max(r['rss_mib'] for r in got):.0f} MiB | {got[0]['int_share']:.1%}",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("sweep", "traced", "one", "peaks", "one-peak"))
    parser.add_argument("pids", nargs="*", type=int)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--sizes", default="16,64,256,1024")
    parser.add_argument("--ints", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-index", action="store_true")
    parser.add_argument("--slices", default="8192,256", help="peaks: SLICE_PAGES values")
    parser.add_argument("--slice-pages", type=int, default=256)
    parser.add_argument("--scans", type=int, default=2,
                        help="traced: scans per scanner with the index; the last is reported")
    args = parser.parse_args()
    if args.mode == "one":
        one(args.pids[0], args.pids[1], args.no_index, args.scans)
    elif args.mode == "one-peak":
        one_peak(args.pids[0], args.pids[1], args.slice_pages)
    elif args.mode == "peaks":
        peaks(args.python, [int(s) for s in args.sizes.split(",")],
              [int(s) for s in args.slices.split(",")], args.repeat)
    elif args.mode == "sweep":
        sweep(args.python, [int(s) for s in args.sizes.split(",")], args.repeat)
    else:
        traced(args.python, args.ints, args.repeat, args.scans)


if __name__ == "__main__":
    main()
