"""Capture real heap pages for the offline heap parser test (tests/data/heap-<version>.npz).

Runs tests/cow/heap_target.py under a pyenv CPython with small sizes, takes the worker's
exclusive pages that hold its ints and Records (the snapshot), parses them live while
recording every other page the parser reads (pool pages, type objects, names), and stores
both with the worker's maps and its own ground truth.

    python tests/cow/capture_heap.py 3.8.18 3.12.1
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from memscope.cow.cpython import detect_target
from memscope.cow.heap import parse_heap
from memscope.cow.memreader import PAGE, MemReader
from memscope.procfs import ProcFS
from tests.cow._heap_helpers import forked_worker, private_pages

N_INTS, N_RECORDS = 20_000, 3_000
DATA = Path(__file__).resolve().parents[1] / "data"


class RecordingReader(MemReader):
    """A MemReader that remembers every page it served from the target."""

    def __init__(self, pid: int, procfs: ProcFS) -> None:
        super().__init__(pid, procfs)
        self.seen: dict[int, bytes] = {}

    def read_pages(self, addrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        data, valid = super().read_pages(addrs)
        for addr, row, ok in zip(addrs.tolist(), data, valid.tolist(), strict=True):
            if ok:
                self.seen[int(addr)] = row.tobytes()
        return data, valid

    def _page(self, page: int) -> bytes | None:
        content = super()._page(page)
        if content is not None:
            self.seen[page] = content
        return content


def capture(version: str) -> Path:
    procfs = ProcFS()
    with (
        tempfile.TemporaryDirectory() as tmp,
        forked_worker(version, Path(tmp), N_INTS, N_RECORDS) as worker,
    ):
        target = detect_target(worker.pid, procfs)
        exclusive = private_pages(worker.pid, exclusive_only=True)
        record_pages = np.unique(worker.record_ids & ~np.uint64(PAGE - 1))
        wanted = np.union1d(worker.int_pages, record_pages)
        pages = exclusive[np.isin(exclusive, wanted)]
        with RecordingReader(worker.pid, procfs) as reader:
            data, valid = reader.read_pages(pages)
            assert valid.all()
            reader.seen.clear()
            parse_heap(target, reader, pages, data)
            extra = sorted(set(reader.seen) - set(pages.tolist()))
            out = DATA / f"heap-{version}.npz"
            np.savez_compressed(
                out,
                version=np.array(target.version),
                maps=np.frombuffer(procfs.read(worker.pid, "maps"), dtype=np.uint8),
                page_addrs=pages,
                page_bytes=data,
                extra_addrs=np.array(extra, dtype=np.uint64),
                extra_bytes=np.array(
                    [np.frombuffer(reader.seen[a], dtype=np.uint8) for a in extra], dtype=np.uint8
                ).reshape(-1, PAGE),
                record_ids=worker.record_ids,
                int_pages=worker.int_pages,
            )
    return out


if __name__ == "__main__":
    for v in sys.argv[1:]:
        print(capture(v))
