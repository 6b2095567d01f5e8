"""Heap parsing of real forked workers, on every CPython 3.8-3.15.

GIVEN a parent that preloads 2M ints in a list, 300k `Record` instances, a 100k-entry dict,
3 MiB of bytes, a 2 MiB bytearray and an 8 MiB numpy array, then forks a worker that iterates the ints and runs
gc.collect(); WHEN its pages are parsed from outside; THEN the objects come out typed, at the
addresses and counts the worker itself reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memscope.cow._model import HeapMap
from memscope.cow.cpython import Target, detect_target
from memscope.cow.heap import parse_heap
from memscope.cow.memreader import MemReader
from memscope.procfs import ProcFS
from tests.cow._heap_helpers import (
    VERSIONS,
    Worker,
    bytes_by_type_in_pages,
    forked_worker,
    private_pages,
)

pytestmark = pytest.mark.slow

N_INTS = 2_000_000
N_RECORDS = 300_000


class Parsed:
    def __init__(self, worker: Worker, exclusive_only: bool) -> None:
        procfs = ProcFS()
        self.target: Target = detect_target(worker.pid, procfs)
        self.pages = private_pages(worker.pid, exclusive_only)
        with MemReader(worker.pid, procfs) as reader:
            data, valid = reader.read_pages(self.pages)
            assert valid.all()
            self.heap: HeapMap = parse_heap(self.target, reader, self.pages, data)

    def rows_of(self, name: str, buffers: bool = False) -> np.ndarray:
        if name not in self.heap.type_names:
            return np.zeros(0, dtype=np.int64)
        index = self.heap.type_names.index(name)
        return np.flatnonzero((self.heap.type_index == index) & (self.heap.is_buffer == buffers))


@pytest.fixture(scope="module", params=VERSIONS)
def worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    tmp: Path = tmp_path_factory.mktemp("heap")
    with forked_worker(request.param, tmp, N_INTS, N_RECORDS) as w:
        yield w


@pytest.fixture(scope="module")
def copied(worker: Worker) -> Parsed:
    """The worker's exclusive pages: what it copied (and allocated) since the fork."""
    return Parsed(worker, exclusive_only=True)


@pytest.fixture(scope="module")
def everything(worker: Worker) -> Parsed:
    """Every present private page of the worker, shared ones included."""
    return Parsed(worker, exclusive_only=False)


def test_detects_the_version_the_worker_reports(worker: Worker, copied: Parsed) -> None:
    assert copied.target.supported, copied.target.reason
    assert list(copied.target.version or ()) == worker.truth["version"]
    assert copied.target.method


def test_iterated_int_pages_are_copied_and_typed_int(worker: Worker, copied: Parsed) -> None:
    int_pages = worker.int_pages
    assert np.isin(int_pages, copied.pages).mean() >= 0.95  # iteration copied them
    in_set = int_pages[np.isin(int_pages, copied.pages)]
    by_type = bytes_by_type_in_pages(copied.heap, in_set)
    assert by_type.get("int", 0) >= 0.90 * len(in_set) * 4096


def test_records_are_qualified_counted_and_at_their_ids(worker: Worker, copied: Parsed) -> None:
    rows = copied.rows_of("__main__.Record")
    starts = copied.heap.start[rows]
    assert abs(len(rows) - N_RECORDS) <= 0.03 * N_RECORDS
    assert np.isin(worker.record_ids, starts).mean() >= 0.97
    assert not copied.heap.is_buffer[rows].any()
    assert copied.heap.gc_tracked[rows].all()


def test_nested_classes_by_qualified_name(worker: Worker, everything: Parsed) -> None:
    assert len(everything.rows_of("__main__.Outer.Inner")) == worker.truth["inners"]


def test_immortal_heap_strings_are_typed(worker: Worker, everything: Parsed) -> None:
    # An interned identifier lives in a pymalloc pool and is immortal on 3.12+; on 3.14+ its
    # refcount word has flag bits above bit 48 (Layout.refcnt_mask).
    heap = everything.heap
    row = np.flatnonzero(heap.start == np.uint64(int(worker.truth["identifier"])))  # type: ignore[call-overload]
    assert len(row) == 1
    assert heap.type_names[heap.type_index[row[0]]] == "str"
    assert not heap.is_buffer[row[0]]


def test_free_blocks_are_not_objects(copied: Parsed) -> None:
    heap = copied.heap
    assert len(np.unique(heap.block_start)) == len(heap.block_start)
    free_words = heap.allocator_ranges[:, 0]
    # No listed block starts where a free-list link lives.
    assert not np.isin(heap.block_start, free_words).any()


def test_large_objects_and_buffers_in_malloc_chunks(worker: Worker, everything: Parsed) -> None:
    heap = everything.heap
    # The 3 MiB bytes object: a malloc'd object, typed at its id().
    blob = np.flatnonzero(heap.start == np.uint64(int(worker.truth["blob"])))  # type: ignore[call-overload]
    assert len(blob) == 1
    assert heap.type_names[heap.type_index[blob[0]]] == "bytes"
    assert heap.block_size[blob[0]] >= int(worker.truth["blob_size"])  # type: ignore[call-overload]
    # Buffers owned by typed objects carry the owner's type.
    list_items = heap.block_size[everything.rows_of("list", buffers=True)].sum()
    assert list_items >= N_INTS * 8  # the 2M-item array of the int list
    assert heap.block_size[everything.rows_of("bytearray", buffers=True)].sum() >= 2 << 20
    assert heap.block_size[everything.rows_of("dict", buffers=True)].sum() >= 100_000 * 16
    # numpy's data buffer (a malloc chunk) belongs to the ndarray that points at it.
    if worker.truth["ndarray_data"] is None:
        pytest.skip(f"CPython {worker.truth['version']} has no numpy (no wheels for it yet)")
    data = np.uint64(int(worker.truth["ndarray_data"]))  # type: ignore[call-overload]
    row = np.searchsorted(heap.block_start, data, side="right") - 1
    assert heap.block_start[row] <= data < heap.block_start[row] + np.uint64(heap.block_size[row])
    assert heap.type_names[heap.type_index[row]] == "numpy.ndarray"
    assert heap.is_buffer[row]
    assert heap.block_size[row] >= int(worker.truth["ndarray_bytes"])  # type: ignore[call-overload]
