"""Accuracy and speed of the heap parser on every pyenv CPython (numbers for docs/cow-heap.md).

For each version: run tests/cow/heap_target.py (2M ints iterated and 300k `Record` instances
gc.collect()ed in a forked worker), take the worker's exclusive (copied or new) pages, parse
them, and print: pages parsed, share of the int pages' bytes typed `int`, Records found vs
the worker's own count and ids, share of parsed bytes that got a Python type, parse time
(best of 3) and the floor (pagemap + reading the pages).

    python bench/heap_accuracy.py [3.8.18 3.12.1 ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memscope.cow.cpython import detect_target
from memscope.cow.heap import parse_heap
from memscope.cow.memreader import PAGE, MemReader
from memscope.procfs import ProcFS
from tests.cow._heap_helpers import (
    VERSIONS,
    bytes_by_type_in_pages,
    forked_worker,
    private_pages,
)


def measure(version: str) -> str:
    procfs = ProcFS()
    with (
        tempfile.TemporaryDirectory() as tmp,
        forked_worker(version, Path(tmp), 2_000_000, 300_000) as worker,
    ):
        target = detect_target(worker.pid, procfs)
        floors, parses = [], []
        for _ in range(3):
            with MemReader(worker.pid, procfs) as reader:
                t0 = time.perf_counter()
                pages = private_pages(worker.pid, exclusive_only=True)
                data, _ = reader.read_pages(pages)
                t1 = time.perf_counter()
                heap = parse_heap(target, reader, pages, data)
                t2 = time.perf_counter()
            floors.append(t1 - t0)
            parses.append(t2 - t1)
        int_pages = worker.int_pages[np.isin(worker.int_pages, pages)]
        int_share = bytes_by_type_in_pages(heap, int_pages).get("int", 0) / (len(int_pages) * PAGE)
        rec = heap.type_names.index("__main__.Record")
        starts = heap.start[(heap.type_index == rec) & ~heap.is_buffer]
        matched = int(np.isin(worker.record_ids, starts).sum())
        in_pages = heap.block_size.sum()
        typed = heap.block_size[heap.type_index != 0].sum()
        return (
            f"| {target.describe()} | {len(pages) * PAGE / 2**20:.1f} | {int_share:.1%} "
            f"| {len(starts)} / {matched} of {len(worker.record_ids)} | {typed / in_pages:.1%} "
            f"| {min(parses) * 1000:.0f} | {min(floors) * 1000:.0f} |"
        )


def main() -> None:
    print(
        "| target | copied MiB | int pages typed int | Records found / at their id "
        "| block bytes typed | parse ms | floor ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for version in sys.argv[1:] or VERSIONS:
        print(measure(version), flush=True)


if __name__ == "__main__":
    main()
