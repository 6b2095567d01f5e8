"""glibc malloc chunks holding the blocks pymalloc does not serve (over 512 bytes).

A chunk is `prev_size, size|flags` then user data (at chunk+16). Flags: PREV_INUSE 1,
IS_MMAPPED 2, NON_MAIN_ARENA 4. Two kinds are walked:

- the main arena, `[heap]`: chunks follow each other from the start of the mapping; a chunk
  is in use when the next chunk has PREV_INUSE. The walk stops at the last page of interest,
  at the top chunk, or at the first implausible size (then the rest stays unparsed).
- mmapped chunks (big allocations) in anonymous mappings: `size|IS_MMAPPED` with a
  page-multiple size at a page boundary. Anonymous mappings can merge, so a mapping is walked
  chunk by chunk, skipping whole pymalloc arenas, and re-synchronising at the next page of
  interest when a header does not parse.

Thread arenas (64 MiB-aligned heaps with a heap_info header) are not walked. tcache and
fastbin chunks look in use to the walk; they carry no object header so they end up as
untyped buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from memscope.cow.cpython import Layout
from memscope.cow.heap_snapshot import Snapshot
from memscope.cow.memreader import PAGE, Unmapped
from memscope.procfs import MapEntry

__all__ = ["Chunks", "find_chunks"]

_PREV_INUSE, _IS_MMAPPED, _FLAGS = 1, 2, 7
_MIN_CHUNK = 32


@dataclass
class Chunks:
    addr: npt.NDArray[np.uint64]  # chunk start (the prev_size word)
    size: npt.NDArray[np.int64]  # chunk size, header included


def find_chunks(layout: Layout, snap: Snapshot, pool_bases: npt.NDArray[np.uint64]) -> Chunks:
    """In-use malloc chunks overlapping the snapshot pages that are not pymalloc pools."""
    pool_pages = (
        pool_bases[:, None] + np.arange(layout.pool_size // PAGE, dtype=np.uint64) * np.uint64(PAGE)
    ).ravel()
    rest = snap.addrs[~np.isin(snap.addrs, pool_pages)]
    found: list[tuple[int, int]] = []
    if not len(rest):
        return Chunks(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    for start, end, is_heap in _regions(snap.reader.maps()):
        lo, hi = np.searchsorted(rest, [start, end])
        if lo == hi:
            continue
        wanted = rest[lo:hi].tolist()
        if is_heap:
            found.extend(_walk_heap(snap, start, end, wanted[-1] + PAGE))
        else:
            found.extend(_walk_mmapped(layout, snap, start, end, wanted))
    if not found:
        return Chunks(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    addr = np.array([a for a, _ in found], dtype=np.uint64)
    size = np.array([s for _, s in found], dtype=np.int64)
    # Keep chunks that overlap one of the snapshot's pages.
    first = addr & ~np.uint64(PAGE - 1)
    last = (addr + size.astype(np.uint64) - np.uint64(1)) & ~np.uint64(PAGE - 1)
    i = np.searchsorted(snap.addrs, first)
    j = np.searchsorted(snap.addrs, last, side="right")
    keep = j > i
    return Chunks(addr[keep], size[keep])


def _regions(maps: list[MapEntry]) -> list[tuple[int, int, bool]]:
    """(start, end, is_heap) of the writable anonymous mappings and of the main arena.

    The `[heap]` of a forked child is often two or more adjacent VMAs (the part grown after the
    fork cannot merge with the inherited one) while its chunks run across the boundary: the
    adjacent `[heap]` VMAs are walked as one range."""
    out: list[tuple[int, int, bool]] = []
    for m in maps:
        if not m.perms.startswith("rw") or (m.path and m.path != "[heap]"):
            continue
        is_heap = m.path == "[heap]"
        if is_heap and out and out[-1][2] and out[-1][1] == m.start:
            out[-1] = (out[-1][0], m.end, True)
        else:
            out.append((m.start, m.end, is_heap))
    return out


def _walk_heap(snap: Snapshot, start: int, end: int, stop: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = (start + 15) & ~15
    prev: tuple[int, int] | None = None
    try:
        while pos + 16 <= end:
            word = snap.u64(pos + 8)
            if prev is not None and word & _PREV_INUSE:
                out.append(prev)  # the next chunk says `prev` is in use
            if pos >= stop:
                break
            size = word & ~_FLAGS
            if size < _MIN_CHUNK or size % 16 or pos + size > end:
                break
            prev = (pos, size)
            pos += size
    except Unmapped:
        pass
    return out


def _walk_mmapped(
    layout: Layout, snap: Snapshot, start: int, end: int, wanted: list[int]
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = start
    stop = wanted[-1] + PAGE
    k = 0  # index of the next wanted page at or after pos
    while pos < stop:
        try:
            step = _mmapped_chunk(layout, snap, pos, end)
        except Unmapped:
            step = 0
        if step > 0:
            out.append((pos, step))
            pos += step
        elif step < 0:  # a pymalloc arena: skip it whole
            pos += -step
        else:
            while k < len(wanted) and wanted[k] <= pos:
                k += 1
            if k == len(wanted):
                break
            pos = wanted[k]
    return out


def _mmapped_chunk(layout: Layout, snap: Snapshot, pos: int, end: int) -> int:
    """Size of an mmapped chunk at `pos`, -arena size for a pymalloc arena, else 0."""
    word = snap.u64(pos + 8)
    size = word & ~_FLAGS
    if word & _FLAGS == _IS_MMAPPED and size >= PAGE and size % PAGE == 0 and pos + size <= end:
        return size
    pool = (pos + layout.pool_size - 1) & ~(layout.pool_size - 1)
    if pool + 48 <= end:
        szidx = snap.u64(pool + 32) >> 32
        maxnext = snap.u64(pool + 40) >> 32
        if szidx < 32 and maxnext == layout.pool_size - (szidx + 1) * 16:
            return -min(layout.arena_size, end - pos)
    return 0
