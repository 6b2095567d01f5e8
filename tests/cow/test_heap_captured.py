"""The heap parser on captured real pages (tests/data/heap-*.npz, see capture_heap.py).

GIVEN the pages of a forked worker holding 20k ints and 3k `Record` instances, captured with
every other page the parser needed (pool pages, type objects) and the worker's maps; WHEN the
parser runs on them offline; THEN it finds what the worker reported about itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memscope.cow.cpython import Target
from memscope.cow.heap import BUFFER, UnsupportedTarget, parse_heap
from memscope.cow.memreader import PAGE, MemReader
from memscope.procfs import MapEntry, ProcFS, parse_maps
from tests.cow._heap_helpers import bytes_by_type_in_pages

DATA = Path(__file__).resolve().parents[1] / "data"
CAPTURES = sorted(DATA.glob("heap-*.npz"))


class ReplayReader(MemReader):
    """Serves captured pages as if they were the target's memory."""

    def __init__(self, pages: dict[int, bytes], maps: list[MapEntry]) -> None:
        self.pid = 0
        self.procfs = ProcFS()
        self._fd = -1
        self._cache = {}
        self._maps = maps
        self.bytes_read = 0
        self._pages = pages

    def _pread_into(self, buf: memoryview, addr: int) -> int:
        done = 0
        while done < len(buf):
            page = self._pages.get(addr + done)
            if page is None:
                break
            take = min(PAGE, len(buf) - done)
            buf[done : done + take] = page[:take]
            done += take
        return done


@pytest.fixture(scope="module", params=CAPTURES, ids=lambda p: p.stem)
def capture(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    with np.load(request.param) as npz:
        return {k: npz[k] for k in npz.files}


def test_captures_exist() -> None:
    assert {p.stem for p in CAPTURES} >= {"heap-3.8.18", "heap-3.12.1"}


def test_parse_captured_pages(capture: dict[str, np.ndarray]) -> None:
    pages = {
        int(a): capture["extra_bytes"][i].tobytes() for i, a in enumerate(capture["extra_addrs"])
    }
    for i, a in enumerate(capture["page_addrs"]):
        pages[int(a)] = capture["page_bytes"][i].tobytes()
    reader = ReplayReader(pages, parse_maps(capture["maps"].tobytes()))
    version = tuple(int(x) for x in capture["version"])
    target = Target(0, "cpython", (version[0], version[1], version[2]), supported=True)

    heap = parse_heap(target, reader, capture["page_addrs"], capture["page_bytes"])

    names = heap.type_names
    assert names[0] == BUFFER
    record = names.index("__main__.Record")
    starts = heap.start[(heap.type_index == record) & ~heap.is_buffer]
    assert np.isin(capture["record_ids"], starts).all()
    assert len(starts) == len(capture["record_ids"])
    int_pages = capture["int_pages"][np.isin(capture["int_pages"], capture["page_addrs"])]
    assert len(int_pages) > 0
    by_type = bytes_by_type_in_pages(heap, int_pages)
    assert by_type["int"] >= 0.9 * len(int_pages) * PAGE
    # Every validated pool's header is reported as allocator metadata, 48 bytes each.
    assert heap.pool_size == (4096 if version < (3, 10) else 16384)
    assert len(heap.pools) > 0
    headers = heap.allocator_ranges[
        (heap.allocator_ranges[:, 1] - heap.allocator_ranges[:, 0]) == 48
    ]
    assert np.isin(heap.pools, headers[:, 0]).all()


def test_no_pages_no_rows(capture: dict[str, np.ndarray]) -> None:
    reader = ReplayReader({}, parse_maps(capture["maps"].tobytes()))
    version = tuple(int(x) for x in capture["version"])
    target = Target(0, "cpython", (version[0], version[1], version[2]), supported=True)
    heap = parse_heap(target, reader, np.zeros(0, np.uint64), np.zeros((0, PAGE), np.uint8))
    assert len(heap.start) == 0
    assert heap.type_names == [BUFFER]


def test_unsupported_target_is_refused() -> None:
    target = Target(0, "cpython", (3, 13, 0), free_threaded=True, reason="free-threaded build")
    reader = ReplayReader({}, [])
    with pytest.raises(UnsupportedTarget, match="free-threaded"):
        parse_heap(target, reader, np.zeros(0, np.uint64), np.zeros((0, PAGE), np.uint8))
