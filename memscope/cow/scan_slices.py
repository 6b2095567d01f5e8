"""A scan's copied pages in bounded slices, and the sum of their attributions.

Reading, diffing and heap-parsing every copied page at once needs ~3.4x the copied size in
memory (the pages, the parent's, and a dozen arrays per heap block): 3.4 GiB for a worker
that copied 1 GiB, 55 MiB for one that copied 16 MiB. The scanner instead takes the sorted
copied pages `SLICE_PAGES` at a time (cut at pymalloc pool boundaries, so a pool lies in one
slice), and `Totals` adds up what each slice attributed. A long-running recording scans
workers over and over, and each scan's peak is memscope's peak: 1 MiB slices keep it
at ~4 MiB above what memscope holds between scans, for ~1.5x the CPU of one whole slice
(docs/performance.md, "Scan peaks").

One thing a slice cannot see is an owner in another slice: a list whose items array, or an
ndarray whose data, was copied too but lies in a different slice. Each slice therefore
keeps (a) the bytes of its still-untyped blocks, per cause, and (b) the pointers of its typed
owners that landed in none of its blocks but in another copied page. At the end those
pointers type the untyped blocks they point into, moving their bytes from `buffer` to the
owner's type, as one parse of all the pages would have done.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from memscope.cow._model import HeapMap, TypeBytes
from memscope.cow.causes import CAUSES, CauseResult
from memscope.cow.heap import BUFFER
from memscope.cow.pagemap import PAGE_SIZE, U64

__all__ = ["SLICE_PAGES", "Totals", "slices"]

SLICE_PAGES = 256  # 1 MiB of copied pages per slice
_PAGE = np.uint64(PAGE_SIZE)


def slices(copied: U64, size: int = 0, align: int = 16384) -> list[tuple[int, int]]:
    """[lo, hi) index ranges of the sorted `copied` pages, about `size` pages each
    (default SLICE_PAGES), cut where the `align`-byte block (a pymalloc pool) changes."""
    size = size or SLICE_PAGES
    n = len(copied)
    bounds = [0]
    block = copied & ~np.uint64(align - 1) if n > size else copied
    while n - bounds[-1] > size:
        cut = bounds[-1] + size
        # Move the cut forward to the first page of the next pool (at most one pool on).
        while cut < n and block[cut] == block[cut - 1]:
            cut += 1
        if cut >= n:
            break
        bounds.append(cut)
    bounds.append(n)
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]


@dataclass
class Totals:
    """The attributions of the slices of one scan, summed."""

    copied: U64  # every copied page of the scan, sorted
    bytearray_bytes: bool = False  # 3.15+: a bytearray's data is a bytes object it points to
    by_cause: dict[str, int] = field(default_factory=dict)
    type_cause: dict[str, dict[str, int]] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    # Untyped blocks (start, end, cause index, bytes, their type), and foreign owner
    # pointers (ptr, owner's type).
    _blocks: list[tuple[U64, U64, np.ndarray, np.ndarray, str]] = field(default_factory=list)
    _ptrs: list[tuple[U64, list[str]]] = field(default_factory=list)

    def add(self, result: CauseResult, addrs: U64, heap: HeapMap | None) -> None:
        """One slice: its attribution (`addrs`: its pages) and its heap map."""
        for cause, nbytes in result.by_cause.items():
            self.by_cause[cause] = self.by_cause.get(cause, 0) + nbytes
        for name, causes in result.by_type_cause.items():
            mine = self.type_cause.setdefault(name, {})
            for cause, nbytes in causes.items():
                mine[cause] = mine.get(cause, 0) + nbytes
        for t in result.by_type:
            self.objects[t.type] = self.objects.get(t.type, 0) + t.objects
        if heap is None:
            return
        for name in (BUFFER, "bytes") if self.bytearray_bytes else (BUFFER,):
            if name in heap.type_names:
                self._keep_untyped(result, addrs, heap, name)
        self._keep_pointers(heap)

    def _keep_untyped(self, result: CauseResult, addrs: U64, heap: HeapMap, name: str) -> None:
        rows = np.flatnonzero(heap.type_index == heap.type_names.index(name))
        if not len(rows):
            return
        start = heap.block_start[rows]
        end = start + heap.block_size[rows].astype(np.uint64)
        p0 = np.searchsorted(addrs, start & ~(_PAGE - np.uint64(1))).astype(np.int64)
        p1 = np.searchsorted(addrs, (end - np.uint64(1)) & ~(_PAGE - np.uint64(1)), "right")
        count = np.maximum(p1.astype(np.int64) - p0, 0)
        block = np.repeat(np.arange(len(rows)), count)
        first = np.repeat(np.cumsum(count) - count, count)
        page = np.repeat(p0, count) + (np.arange(len(block)) - first)
        lo = np.maximum(start[block], addrs[page])
        hi = np.minimum(end[block], addrs[page] + _PAGE)
        nbytes = hi.astype(np.int64) - lo.astype(np.int64)
        keep = nbytes > 0
        block, page, nbytes = block[keep], page[keep], nbytes[keep]
        self._blocks.append((start[block], end[block], result.page_cause[page], nbytes, name))

    def _keep_pointers(self, heap: HeapMap) -> None:
        ptrs = heap.owner_ptrs
        if not len(ptrs) or not len(self.copied):
            return
        page = ptrs & ~(_PAGE - np.uint64(1))
        at = np.minimum(np.searchsorted(self.copied, page), len(self.copied) - 1)
        hit = self.copied[at] == page
        names = [heap.type_names[i] for i in heap.owner_types[hit].tolist()]
        self._ptrs.append((ptrs[hit], names))

    def finish(self) -> tuple[dict[str, int], list[TypeBytes], dict[str, dict[str, int]]]:
        """(by_cause, by_type, by_type_cause) of the whole scan."""
        self._retype_foreign_owned()
        totals = {name: sum(c.values()) for name, c in self.type_cause.items()}
        order = sorted(totals, key=lambda name: -totals[name])
        kept = [n for n in order if totals[n] > 0]
        by_type = [TypeBytes(n, totals[n], self.objects.get(n, 0)) for n in kept]
        by_type_cause = {n: {c: b for c, b in self.type_cause[n].items() if b > 0} for n in kept}
        return dict(self.by_cause), by_type, by_type_cause

    def _retype_foreign_owned(self) -> None:
        if not self._blocks or not self._ptrs:
            return
        start = np.concatenate([b[0] for b in self._blocks])
        end = np.concatenate([b[1] for b in self._blocks])
        cause = np.concatenate([b[2] for b in self._blocks]).astype(np.int64)
        nbytes = np.concatenate([b[3] for b in self._blocks])
        kinds = [b[4] for b in self._blocks]
        kind = np.repeat(np.arange(len(kinds)), [len(b[0]) for b in self._blocks])
        order = np.argsort(start, kind="stable")
        start, end, cause, nbytes, kind = (a[order] for a in (start, end, cause, nbytes, kind))
        ptrs = np.concatenate([p[0] for p in self._ptrs])
        names = [n for p in self._ptrs for n in p[1]]
        j = np.searchsorted(start, ptrs, side="right").astype(np.int64) - 1
        ok = j >= 0
        ok[ok] = ptrs[ok] < end[j[ok]]
        owner_of: dict[int, str] = {}  # block start -> first owner's type
        for k in np.flatnonzero(ok).tolist():
            was = kinds[int(kind[j[k]])]
            if was == BUFFER or names[k] == "bytearray":  # bytes: only a bytearray's storage
                owner_of.setdefault(int(start[j[k]]), names[k])
        if not owner_of:
            return
        rows = np.flatnonzero(np.isin(start, np.fromiter(owner_of, dtype=np.uint64)))
        for s, c, b, t in zip(
            start[rows].tolist(),
            cause[rows].tolist(),
            nbytes[rows].tolist(),
            kind[rows].tolist(),
            strict=True,
        ):
            name, was, cause_name = owner_of[s], kinds[t], CAUSES[c]
            old = self.type_cause.setdefault(was, {})
            old[cause_name] = old.get(cause_name, 0) - b
            mine = self.type_cause.setdefault(name, {})
            mine[cause_name] = mine.get(cause_name, 0) + b
