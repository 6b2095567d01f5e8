"""The parent's `[heap]` index: a traced parent's chunks walked once, same blocks found.

The target runs tracemalloc (one malloc chunk per trace in `[heap]`, as under --trace-sites),
keeps 600-byte bytes objects (malloc chunks, interleaved with the traces) and forks; the worker
touches every bytes object, copying their `[heap]` pages. The heap map of those pages must be
the same whether `[heap]` is walked from its start or from the parent's index, and the index
must have walked the traces once rather than once per call.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import numpy as np
import pytest

from memscope.cow import heap_malloc
from memscope.cow.cpython import detect_target
from memscope.cow.heap import parse_heap
from memscope.cow.heap_index import heap_index_for
from memscope.cow.memreader import MemReader
from memscope.procfs import ProcFS
from tests.conftest import target_python
from tests.cow._heap_helpers import private_pages

N_TRACED, N_BLOBS = 200_000, 20_000
WORKLOAD = f"""
import os, sys, tracemalloc
tracemalloc.start(1)
ints = list(range(10**9, 10**9 + {N_TRACED}))
blobs = [bytes(600) for _ in range({N_BLOBS})]
pid = os.fork()
if pid == 0:
    held = [len(b) for b in blobs]  # refcount writes: copies the blobs' [heap] pages
    print(os.getppid(), os.getpid(), flush=True)
    sys.stdin.read()
    os._exit(0)
print(flush=True)
os.waitpid(pid, 0)
"""


@pytest.fixture(scope="module", params=["3.8", "3.11", "3.13"])
def traced_worker(request: pytest.FixtureRequest) -> Iterator[tuple[int, int]]:
    python = target_python(request.param)
    if python is None:
        pytest.skip(f"CPython {request.param} is not installed")
    proc = subprocess.Popen(
        [python, "-c", WORKLOAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split() or proc.stdout.readline().split()
        ppid, pid = (int(x) for x in line)
        yield ppid, pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


def test_index_finds_the_same_blocks_as_the_walk_from_the_heap_start(
    traced_worker: tuple[int, int],
) -> None:
    ppid, pid = traced_worker
    fs = ProcFS()
    pages = private_pages(pid, exclusive_only=True)
    target = detect_target(pid, fs)
    with MemReader(pid, fs) as reader:
        data, ok = reader.read_pages(pages)
        pages, data = pages[ok], data[ok]
        from_start = parse_heap(target, reader, pages, data)
    index = heap_index_for(ppid, fs)
    assert index is not None
    # One parse walks at most WALK_BUDGET chunks of the parent (plus the rest of one 1 MiB
    # block); the index grows over successive parses until the wanted pages are covered.
    budget = 50_000
    parses = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(heap_malloc, "WALK_BUDGET", budget)
        while True:
            before = index.chunks_walked
            with MemReader(pid, fs) as reader:
                indexed = parse_heap(target, reader, pages, data, index)
            parses += 1
            assert index.chunks_walked - before <= budget + (1 << 20) // 32
            if index.chunks_walked == before:
                break
            assert parses < 50
    assert parses > 2  # the traces needed several budgets
    assert np.array_equal(indexed.block_start, from_start.block_start)
    assert np.array_equal(indexed.block_size, from_start.block_size)
    names = np.array(indexed.type_names)
    assert list(names[indexed.type_index]) == list(
        np.array(from_start.type_names)[from_start.type_index]
    )
    blobs = int(np.count_nonzero((names[indexed.type_index] == "bytes")
                                 & (indexed.block_size >= 600)))
    assert blobs >= N_BLOBS
    # The traces (one chunk each) were walked by the index, once: a second call reuses it.
    walked = index.chunks_walked
    assert walked >= N_TRACED
    with MemReader(pid, fs) as reader:
        parse_heap(target, reader, pages, data, heap_index_for(ppid, fs))
    assert heap_index_for(ppid, fs) is index
    assert index.chunks_walked == walked
