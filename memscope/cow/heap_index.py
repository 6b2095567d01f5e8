"""Chunk boundaries of a parent's main arena (`[heap]`), walked once and reused by every worker.

glibc's main arena can only be walked chunk by chunk from its start: a page in the middle of
`[heap]` says nothing about where its chunks begin. A traced parent (tracemalloc) holds one
malloc chunk per trace there, millions of them, and walking them from the start for every
scan of every worker cost more than the rest of the scan together (5.4 s against 0.29 s for an
untraced 2M-object worker).

Forked workers inherit the parent's heap at the same addresses, so the parent's chunk
boundaries are the workers' boundaries wherever the worker has not reshaped its heap since.
`HeapIndex` walks the parent's `[heap]` once, incrementally up to the highest address asked
for, and keeps one *mark* per page: the first chunk that starts in that page (a few KiB of
ints per 100 MiB of heap). A worker's walk then starts at the last mark at or before each run
of its copied pages instead of at the start of the heap (heap_malloc.find_chunks); where the
worker's chunks disagree (an implausible size), the walk re-synchronises at the next mark.
One parse walks at most WALK_BUDGET chunks of the parent; pages beyond what is indexed yet
stay unparsed (their bytes "(unattributed)") until a later scan has extended the index.
"""

from __future__ import annotations

import array
import bisect

import numpy as np
import numpy.typing as npt

from memscope.cow.memreader import PAGE, MemReader
from memscope.procfs import ProcFS

__all__ = ["WALK_BUDGET", "HeapIndex", "heap_index_for"]

_BLOCK_PAGES = 256  # pages read per call by the walk (1 MiB): bounded memory
# Chunks walked per parse at most (~0.1-0.5 s): a traced parent of millions of objects is indexed
# over several scans, and the [heap] pages past the walked part stay unparsed meanwhile,
# rather than the first scan of a short-lived worker outliving it.
WALK_BUDGET = 250_000
_MIN_CHUNK, _FLAGS = 32, 7
_SIZE_MASK = np.uint64(0xFFFFFFFFFFFFFFFF ^ _FLAGS)


class HeapIndex:
    """One chunk start per page of `[start, end)` (the parent's main arena), walked lazily."""

    def __init__(self, pid: int, start: int, end: int) -> None:
        self.pid, self.start, self.end = pid, start, end
        self.marks = array.array("Q")  # 8 bytes a page (a list of ints: 40)
        self.pos = (start + 15) & ~15  # the next chunk header to walk
        self.done = False  # the walk reached the top chunk or an implausible size
        self.chunks_walked = 0

    def before(self, addr: int) -> int | None:
        """The last known chunk start at or before `addr` (None: none known)."""
        i = bisect.bisect_right(self.marks, addr)
        return self.marks[i - 1] if i else None

    def after(self, addr: int) -> int | None:
        """The first known chunk start after `addr` (None: none known)."""
        i = bisect.bisect_right(self.marks, addr)
        return self.marks[i] if i < len(self.marks) else None

    def extend(self, reader: MemReader, upto: int, budget: int = 0) -> None:
        """Walk the parent's heap (through `reader`, a reader of `pid`) until `upto`, or
        until about `budget` more chunks were walked (0: no limit); 1 MiB blocks at a time,
        each walked whole (_walk_block)."""
        pos, end, marks = self.pos, self.end, self.marks
        last_page = marks[-1] // PAGE if marks else -1
        walked = 0
        while not self.done and pos < upto and not (budget and walked >= budget):
            base = pos & ~(PAGE - 1)
            hi = min(base + _BLOCK_PAGES * PAGE, end)
            pages = np.arange(base, hi, PAGE, dtype=np.uint64)
            data, ok = reader.read_pages(pages)
            readable = int(np.argmin(ok)) if not ok.all() else len(ok)
            if readable == 0:
                self.done = True
                break
            hi = base + readable * PAGE
            if pos + 16 <= hi:
                found, pos, done, steps = _walk_block(
                    data[:readable].reshape(-1).view(np.uint64), base, hi, pos, end)
                new = found.tolist()
                if new and new[0] // PAGE == last_page:
                    del new[0]
                if new:
                    marks.extend(new)
                    last_page = new[-1] // PAGE
                walked += steps
                self.done = done
            if pos + 16 > end:
                self.done = True
        self.pos = pos
        self.chunks_walked += walked


def _walk_block(
    words: npt.NDArray[np.uint64], base: int, hi: int, pos: int, end: int
) -> tuple[npt.NDArray[np.int64], int, bool, int]:
    """Glibc chunks from `pos` through the block [base, hi) (`words`: its 8-byte words):
    the first chunk start in each page the walk reaches, where the walk stops (past the
    block, or on an implausible size: then done), and the chunks walked.

    A walk follows one chunk's size to the next: inherently one step per chunk. The sizes
    are decoded and checked for the whole block at once (numpy: 0 where implausible), so
    the Python loop only adds and appends; the marks are taken from the walked slots after.
    (A traced parent holds millions of chunks: the per-chunk loop that decoded each size
    itself took ~120 ms of each scan while the parent's index grew.)"""
    n = (hi - base) >> 4  # 16-byte slots: a chunk header at slot j needs slot j + 1 inside
    size = (words[1 : 2 * n : 2] & _SIZE_MASK).astype(np.int64)
    addr_end = base + 16 * np.arange(n, dtype=np.int64) + size
    valid = (size >= _MIN_CHUNK) & ((size & 15) == 0) & (addr_end <= end)
    step = np.where(valid, size >> 4, 0).tolist()  # slots to the next chunk (0: stop)
    j, path = (pos - base) >> 4, array.array("q")
    add = path.append
    done = False
    while j < n:
        add(j)
        d = step[j]
        if not d:
            done = True
            break
        j += d
    walked = len(path) - done  # the chunk with the implausible size is reached, not walked
    slots = np.frombuffer(path, dtype=np.int64)
    pages = slots >> 8
    first = np.flatnonzero(np.diff(pages, prepend=-1))  # slots only increase along a walk
    return base + 16 * slots[first], base + 16 * j, done, walked


# Workers of one parent are scanned many times each; the index lives as long as the parent's
# heap does (keyed by pid and heap start, so a reused pid with a new heap gets a new index).
_INDEXES: dict[tuple[int, int], HeapIndex] = {}
_MAX_INDEXES = 16


def heap_index_for(parent_pid: int, procfs: ProcFS) -> HeapIndex | None:
    """The index of `parent_pid`'s `[heap]` (None if it has none), created on first use."""
    heap = [m for m in procfs.maps(parent_pid) if m.path == "[heap]"]
    if not heap:
        return None
    start, end = heap[0].start, heap[-1].end
    key = (parent_pid, start)
    index = _INDEXES.get(key)
    if index is None or index.end != end:
        # A heap that grew or shrank has a new top chunk: walk it afresh. Indexes of parents
        # that exited go now (a long recording sees masters come and go).
        for gone in [k for k in _INDEXES if k[0] != parent_pid and not procfs.exists(k[0])]:
            del _INDEXES[gone]
        if len(_INDEXES) >= _MAX_INDEXES:
            _INDEXES.clear()
        index = _INDEXES[key] = HeapIndex(parent_pid, start, end)
    return index
