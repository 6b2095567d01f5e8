"""Benchmark: heap parsing of 64 MiB of copied pages against the kernel floor.

A target (any pyenv CPython) builds a list of 2M ints and forks; the worker iterates the list,
which copies the ~64 MiB of pages holding the ints. We then time, on the worker:

- floor: read /proc/PID/pagemap for its private mappings, select present+exclusive pages,
  and read those pages from /proc/PID/mem (what any page-level forensics must pay);
- detect: `detect_target` (ELF symbols + version from memory), once per process;
- parse: `parse_heap` on the pages read by the floor step.

Usage:
    python bench/bench_heap.py [--python /root/.pyenv/versions/3.12.1/bin/python3] [--repeat 5]
                               [--ints 2000000] [--workload ints|heap]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memscope.cow.cpython import detect_target
from memscope.cow.heap import parse_heap
from memscope.cow.memreader import PAGE, MemReader
from memscope.cow.pagemap import decode_pagemap, page_addresses, private_writable, read_pagemap
from memscope.procfs import ProcFS

WORKLOAD = """
import os, sys
ints = list(range(1000, 1000 + int(sys.argv[1])))
pid = os.fork()
if pid:
    os.waitpid(pid, 0)
    raise SystemExit
for x in ints:
    pass
print(os.getpid(), flush=True)
sys.stdin.read()
os._exit(0)
"""

# 300k bytes objects of ~1 KB: malloc chunks filling a ~300 MiB [heap]; the worker touches the
# last 20k, so the copied pages sit at the end of the heap and the chunk walk crosses it all.
HEAP_WORKLOAD = """
import os, sys
objs = [bytes(1000) + str(i).encode() for i in range(int(sys.argv[1]))]
pid = os.fork()
if pid:
    os.waitpid(pid, 0)
    raise SystemExit
for o in objs[-20000:]:
    pass
print(os.getpid(), flush=True)
sys.stdin.read()
os._exit(0)
"""


def copied_pages(procfs: ProcFS, pid: int) -> np.ndarray:
    """Present, exclusive pages of the worker's private writable mappings (its copies)."""
    regions = private_writable(procfs.maps(pid))
    addrs, _ = page_addresses(regions)
    table = decode_pagemap(addrs, read_pagemap(procfs, pid, regions))
    return table.addrs[table.present & table.exclusive]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--python", default="/root/.pyenv/versions/3.12.1/bin/python3")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ints", type=int, default=2_000_000)
    ap.add_argument(
        "--workload",
        choices=["ints", "heap"],
        default="ints",
        help="ints: 2M ints iterated (pymalloc); heap: 300k 1 KB bytes, last 20k touched",
    )
    args = ap.parse_args()
    script, count = (WORKLOAD, args.ints) if args.workload == "ints" else (HEAP_WORKLOAD, 300_000)
    proc = subprocess.Popen(
        [args.python, "-c", script, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    pid = int(proc.stdout.readline())
    procfs = ProcFS()
    try:
        t0 = time.perf_counter()
        target = detect_target(pid, procfs)
        detect_s = time.perf_counter() - t0
        floors, parses = [], []
        for _ in range(args.repeat):
            with MemReader(pid, procfs) as reader:
                t0 = time.perf_counter()
                pages = copied_pages(procfs, pid)
                data, _valid = reader.read_pages(pages)
                t1 = time.perf_counter()
                heap = parse_heap(target, reader, pages, data)
                t2 = time.perf_counter()
            floors.append(t1 - t0)
            parses.append(t2 - t1)
        name = "int" if args.workload == "ints" else "bytes"
        typed = heap.type_names.index(name)
        typed_bytes = int(heap.block_size[heap.type_index == typed].sum())
        floor, parse = min(floors), min(parses)
        print(f"target        {target.describe()} ({target.method})")
        print(f"copied pages  {len(pages)} ({len(pages) * PAGE / 2**20:.1f} MiB)")
        print(f"objects       {len(heap.start)} rows, {name} bytes {typed_bytes / 2**20:.1f} MiB")
        print(f"detect        {detect_s * 1000:.1f} ms (once per process)")
        print(f"floor         {floor * 1000:.1f} ms (pagemap + read pages; best of {args.repeat})")
        print(
            f"parse_heap    {parse * 1000:.1f} ms (best of {args.repeat}; first run "
            f"{parses[0] * 1000:.1f} ms, in a fresh process)"
        )
        print(
            f"ratio         parse/floor {parse / floor:.2f}x, (floor+parse)/floor "
            f"{(floor + parse) / floor:.2f}x"
        )
    finally:
        proc.stdin.close()
        proc.wait()


if __name__ == "__main__":
    main()
