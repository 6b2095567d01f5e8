"""glibc malloc chunks holding the blocks pymalloc does not serve (over 512 bytes).

A chunk is `prev_size, size|flags` then user data (at chunk+16). Flags: PREV_INUSE 1,
IS_MMAPPED 2, NON_MAIN_ARENA 4. Two kinds are walked:

- the main arena, `[heap]`: chunks follow each other from the start of the mapping; a chunk
  is in use when the next chunk has PREV_INUSE. The walk stops at the last page of interest,
  at the top chunk, or at the first implausible size (then the rest stays unparsed).
- mmapped chunks (big allocations) in anonymous mappings: `size|IS_MMAPPED` at a page
  boundary, with a page-multiple size (measured on glibc 2.36) or a page multiple less 16
  bytes (measured on glibc 2.43, which Debian's 3.14/3.15 builds here use); the mapping ends
  at the next page boundary either way. Anonymous mappings can merge, so a mapping is walked
  chunk by chunk, skipping whole pymalloc arenas, and re-synchronising at the next page of
  interest when a header does not parse.

Thread arenas (64 MiB-aligned heaps with a heap_info header) are not walked. tcache and
fastbin chunks look in use to the walk; they carry no object header so they end up as
untyped buffers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from memscope.cow.cpython import Layout
from memscope.cow.heap_index import WALK_BUDGET, HeapIndex
from memscope.cow.heap_snapshot import Snapshot, writable_regions
from memscope.cow.memreader import PAGE, MemReader, Unmapped

__all__ = ["Chunks", "find_chunks"]

_PREV_INUSE, _IS_MMAPPED, _FLAGS = 1, 2, 7
_MIN_CHUNK = 32
_READ_AHEAD = 64  # pages read at once by the [heap] walk
_MMAP_SLACK = 16  # glibc 2.43 mmapped chunks: size = mapping size - 16
_RUN_GAP = 8  # wanted [heap] pages this close are walked through as one run


@dataclass
class Chunks:
    addr: npt.NDArray[np.uint64]  # chunk start (the prev_size word)
    size: npt.NDArray[np.int64]  # chunk size, header included


def find_chunks(
    layout: Layout,
    snap: Snapshot,
    pool_bases: npt.NDArray[np.uint64],
    index: HeapIndex | None = None,
) -> Chunks:
    """In-use malloc chunks overlapping the snapshot pages that are not pymalloc pools.

    `index`: the parent's `[heap]` chunk boundaries (heap_index): the `[heap]` walk then
    starts next to each run of pages instead of at the start of the heap.
    """
    pool_pages = (
        pool_bases[:, None] + np.arange(layout.pool_size // PAGE, dtype=np.uint64) * np.uint64(PAGE)
    ).ravel()
    # Both sorted (pools do not overlap): a binary search beats np.isin's sort.
    rest = snap.addrs
    if len(pool_pages):
        at = np.minimum(np.searchsorted(pool_pages, rest), len(pool_pages) - 1)
        rest = rest[pool_pages[at] != rest]
    found: list[tuple[int, int]] = []
    heap_addrs: list[int] = []
    heap_sizes: list[int] = []
    if not len(rest):
        return Chunks(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    for path, lo_addr, hi_addr in writable_regions(snap.reader.maps()):
        lo, hi = np.searchsorted(rest, [lo_addr, hi_addr])
        if lo == hi:
            continue
        wanted = rest[lo:hi].tolist()
        if path == "[heap]" and index is not None and index.start == lo_addr:
            walked_addrs, walked_sizes = _walk_heap_runs(snap, index, hi_addr, wanted)
            heap_addrs += walked_addrs
            heap_sizes += walked_sizes
        elif path == "[heap]":
            walked_addrs, walked_sizes, _ = _walk_heap(snap, lo_addr, hi_addr, wanted[-1] + PAGE)
            heap_addrs += walked_addrs
            heap_sizes += walked_sizes
        else:
            found.extend(_walk_mmapped(layout, snap, lo_addr, hi_addr, wanted))
    addr = np.array(heap_addrs + [a for a, _ in found], dtype=np.uint64)
    size = np.array(heap_sizes + [s for _, s in found], dtype=np.int64)
    addr, first_at = np.unique(addr, return_index=True)  # sorted; runs' walks may overlap
    size = size[first_at]
    # Keep chunks that overlap one of the snapshot's pages.
    first = addr & ~np.uint64(PAGE - 1)
    last = (addr + size.astype(np.uint64) - np.uint64(1)) & ~np.uint64(PAGE - 1)
    i = np.searchsorted(snap.addrs, first)
    j = np.searchsorted(snap.addrs, last, side="right")
    keep = j > i
    return Chunks(addr[keep], size[keep])


def _walk_heap_runs(
    snap: Snapshot, index: HeapIndex, end: int, wanted: list[int]
) -> tuple[list[int], list[int]]:
    """In-use chunks of `[heap]` over the `wanted` pages, each run of them walked from the
    parent's last chunk boundary before it (re-synchronised at the next one on a bad size)."""
    addrs: list[int] = []
    sizes: list[int] = []
    resume = -1  # where the previous walk stopped on a chunk boundary
    limit = index.chunks_walked + WALK_BUDGET  # chunks the parent's index may walk now
    i = 0
    with MemReader(index.pid, snap.reader.procfs) as parent:
        while i < len(wanted):
            j = i + 1  # a run: pages at most _RUN_GAP pages apart
            while j < len(wanted) and wanted[j] - wanted[j - 1] <= _RUN_GAP * PAGE:
                j += 1
            lo, stop = wanted[i], wanted[j - 1] + PAGE
            left = limit - index.chunks_walked
            if left > 0:
                index.extend(parent, stop, left)
            if not index.done and index.pos <= lo:
                break  # not indexed this far yet: later scans extend the index
            mark = index.before(lo)
            if resume >= 0 and (mark is None or resume >= mark):
                pos = resume  # the previous run's walk ended closer to (or past) this one
            else:
                pos = mark if mark is not None else index.start
            while pos < stop:
                got_addrs, got_sizes, reached = _walk_heap(snap, pos, end, stop)
                addrs += got_addrs
                sizes += got_sizes
                if reached >= stop:
                    resume = reached
                    break
                nxt = index.after(reached)  # a size did not parse: the parent's next boundary
                if nxt is None or nxt >= stop:
                    break
                pos = nxt
            i = j
    return addrs, sizes


def _walk_heap(
    snap: Snapshot, start: int, end: int, stop: int
) -> tuple[list[int], list[int], int]:
    """In-use chunks of the main arena from `start` up to `stop`, as (addresses, sizes,
    where the walk stopped: a chunk start >= `stop`, or the chunk whose size did not parse).

    This is the one per-chunk Python loop of the parser; it keeps the current page as bytes
    and reads missing pages 64 at a time when the walk moves through them in order.
    """
    addrs: list[int] = []
    sizes: list[int] = []
    unpack = struct.Struct("<Q").unpack_from
    pos = (start + 15) & ~15
    prev_pos = prev_size = -1
    page_base, content, last_miss = -1, b"", -1
    while pos + 16 <= end:
        base = pos & ~(PAGE - 1)  # a 16-aligned header never crosses a page
        if base != page_base:
            sequential = base == last_miss + PAGE
            got = snap.page(base, _READ_AHEAD if sequential else 1)
            if got is None:
                break
            page_base, content = base, got
            if snap.row(base) is None:
                last_miss = base
        word = unpack(content, pos - base + 8)[0]
        if prev_pos >= 0 and word & _PREV_INUSE:  # the next chunk says `prev` is in use
            addrs.append(prev_pos)
            sizes.append(prev_size)
        if pos >= stop:
            break
        size = word & ~_FLAGS
        if size < _MIN_CHUNK or size & 15 or pos + size > end:
            break
        prev_pos, prev_size = pos, size
        pos += size
    return addrs, sizes, pos


def _walk_mmapped(
    layout: Layout, snap: Snapshot, start: int, end: int, wanted: list[int]
) -> list[tuple[int, int]]:
    """mmapped chunks of an anonymous mapping, up to its last page of interest.

    At a region boundary (the mapping start, or the end of a chunk or arena) a pymalloc arena
    is skipped whole; elsewhere (after re-synchronising) pool by pool, so the walk never
    overshoots the end of an arena it entered in the middle.
    """
    out: list[tuple[int, int]] = []
    pos = start
    at_boundary = True
    stop = wanted[-1] + PAGE
    k = 0  # index of the next wanted page at or after pos
    while pos < stop:
        try:
            size, pool = _mmapped_chunk(snap, pos, end), _pool_at(layout, snap, pos, end)
        except Unmapped:
            size, pool = 0, 0
        if size:
            out.append((pos, size))
            pos += -(-size // PAGE) * PAGE
            at_boundary = True
        elif pool and at_boundary:
            pos = min(pos + layout.arena_size, end)
        elif pool:
            pos = pool + layout.pool_size
        else:
            while k < len(wanted) and wanted[k] <= pos:
                k += 1
            if k == len(wanted):
                break
            pos = wanted[k]
            at_boundary = False
    return out


def _mmapped_chunk(snap: Snapshot, pos: int, end: int) -> int:
    """Size of the mmapped chunk starting at `pos`, or 0."""
    word = snap.u64(pos + 8)
    size = word & ~_FLAGS
    if (
        word & _FLAGS == _IS_MMAPPED
        and size >= PAGE - _MMAP_SLACK
        and (size + _MMAP_SLACK) % PAGE in (0, _MMAP_SLACK)
        and pos + size <= end
    ):
        return size
    return 0


def _pool_at(layout: Layout, snap: Snapshot, pos: int, end: int) -> int:
    """Address of a pymalloc pool header at the first pool boundary from `pos`, or 0."""
    pool = (pos + layout.pool_size - 1) & ~(layout.pool_size - 1)
    if pool + layout.pool_size > end:
        return 0
    szidx = snap.u64(pool + 32) >> 32
    maxnext = snap.u64(pool + 40) >> 32
    if szidx < 32 and maxnext == layout.pool_size - (szidx + 1) * 16:
        return pool
    return 0
