"""Why copied pages were copied, and which Python types live in them.

Each copied page of the child is compared, as u64 words, with the parent's current page at
the same address. Differing words are classified with the HeapMap:

- refcount: the ob_refcnt word of an object;
- gc: one of the two PyGC_Head words just before a GC-tracked object;
- allocator: a pymalloc pool header, or a word inside a pool that belongs to no live object
  (a free block's freelist pointer);
- data: any other word.

A page's bytes go to its strongest cause: data > allocator > refcount > gc, so "gc" means
"only GC headers changed" (what gc.freeze() prevents). A byte-identical page was written and
restored (refcount inc/dec pairs, GC traversal): "transient_gc" when it holds GC-tracked
objects, else "transient_refcount". Without a HeapMap (unsupported target) the causes are
only "write" and "transient". Pages that could not be read are "unread".

Per type, a page's bytes are split across the objects (and owned buffers) in it by the bytes
each occupies in the page; bytes covered by no parsed object are "(unattributed)".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memscope.cow._model import HeapMap, TypeBytes
from memscope.cow.pagemap import BOOL, I64, PAGE_SIZE, U8, U64

__all__ = ["CAUSES", "UNATTRIBUTED", "CauseResult", "attribute"]

# Order is the priority of word causes (higher index wins for a page).
_WORD_CAUSES = ("gc", "refcount", "allocator", "data")
CAUSES = (
    *_WORD_CAUSES,
    "transient_gc",
    "transient_refcount",
    "write",
    "transient",
    "unread",
)
_GC, _REFCOUNT, _ALLOCATOR, _DATA = 0, 1, 2, 3
_T_GC, _T_REF, _WRITE, _TRANSIENT, _UNREAD = 4, 5, 6, 7, 8
UNATTRIBUTED = "(unattributed)"
_PAGE = np.uint64(PAGE_SIZE)


@dataclass
class CauseResult:
    by_cause: dict[str, int]
    by_type: list[TypeBytes]
    by_type_cause: dict[str, dict[str, int]]
    page_cause: U8  # index into CAUSES, per page


def attribute(
    addrs: U64,
    child: U8,
    parent: U8,
    ok: BOOL,
    heap: HeapMap | None,
    pool_size: int = 0,
) -> CauseResult:
    """Causes and types of the copied pages at sorted `addrs` ((n, 4096) contents each)."""
    n = len(addrs)
    cw = child.reshape(n, PAGE_SIZE).view(np.uint64)
    pw = parent.reshape(n, PAGE_SIZE).view(np.uint64)
    diff = (cw != pw) & ok[:, None]
    page_diff = diff.any(axis=1)
    page_cause = np.full(n, _UNREAD, dtype=np.uint8)
    if heap is None:
        page_cause[ok] = np.where(page_diff[ok], _WRITE, _TRANSIENT)
        return _summarise(page_cause, _no_objects(n), [], n)

    obj = _Objects(heap)
    differing = np.flatnonzero(page_diff)
    pi, wi = np.nonzero(diff[differing])
    pi = differing[pi]
    waddr = addrs[pi] + wi.astype(np.uint64) * np.uint64(8)
    word_cause = _word_causes(waddr, obj, heap.allocator_ranges, pool_size)
    strongest = np.full(n, -1, dtype=np.int64)
    if len(pi):
        np.maximum.at(strongest, pi, word_cause)
    overlap = _overlaps(addrs, obj)
    holds_gc = np.zeros(n, dtype=np.bool_)
    tracked = obj.gc_tracked if overlap.identity else obj.gc_tracked[overlap.obj]
    holds_gc[overlap.page[tracked]] = True
    page_cause[ok & page_diff] = strongest[ok & page_diff]
    identical = ok & ~page_diff
    page_cause[identical] = np.where(holds_gc[identical], _T_GC, _T_REF)
    return _summarise(page_cause, overlap, heap.type_names, n, obj)


class _Objects:
    """HeapMap rows sorted by block start (the heap parser's order already), with block ends."""

    def __init__(self, heap: HeapMap) -> None:
        bs = heap.block_start.astype(np.uint64, copy=False)
        if len(bs) > 1 and not bool(np.all(bs[1:] >= bs[:-1])):
            order = np.argsort(bs, kind="stable")
            bs = bs[order]
            size = heap.block_size[order]
            start, tidx = heap.start[order], heap.type_index[order]
            gc, buf = heap.gc_tracked[order], heap.is_buffer[order]
        else:
            size, start, tidx = heap.block_size, heap.start, heap.type_index
            gc, buf = heap.gc_tracked, heap.is_buffer
        self.block_start = bs
        self.block_end = bs + size.astype(np.uint64)
        self.start = start.astype(np.uint64, copy=False)
        self.type_index = tidx.astype(np.int64, copy=False)
        self.gc_tracked = gc.astype(np.bool_, copy=False)
        self.is_buffer = buf.astype(np.bool_, copy=False)


def _word_causes(waddr: U64, obj: _Objects, alloc: U64, pool_size: int) -> I64:
    """Cause code of each differing word address."""
    out = np.full(len(waddr), _DATA, dtype=np.int64)
    if len(waddr) == 0:
        return out
    j = np.searchsorted(obj.block_start, waddr, side="right").astype(np.int64) - 1
    has = j >= 0
    jj = np.where(has, j, 0)
    if len(obj.block_start):
        inblk = has & (waddr < obj.block_end[jj])
        start = obj.start[jj]
        live = inblk & ~obj.is_buffer[jj]
        refcount = live & (waddr == start)
        gc = live & obj.gc_tracked[jj] & (waddr + np.uint64(16) >= start) & (waddr < start)
        out[refcount] = _REFCOUNT
        out[gc] = _GC
    else:
        inblk = np.zeros(len(waddr), dtype=np.bool_)
    if len(alloc):
        heads = np.sort(alloc[:, 0])
        ends = alloc[:, 1][np.argsort(alloc[:, 0], kind="stable")]
        k = np.searchsorted(heads, waddr, side="right").astype(np.int64) - 1
        kk = np.where(k >= 0, k, 0)
        in_header = (k >= 0) & (waddr < ends[kk])
        in_pool = np.zeros(len(waddr), dtype=np.bool_)
        if pool_size:
            base = waddr & ~np.uint64(pool_size - 1)
            p = np.searchsorted(heads, base)
            in_pool = (p < len(heads)) & (heads[np.minimum(p, len(heads) - 1)] == base)
        out[in_header | (~inblk & in_pool)] = _ALLOCATOR
    return out


@dataclass
class _Overlap:
    obj: I64  # object row (sorted order)
    page: I64  # page index
    nbytes: I64  # bytes of the object's block inside the page
    identity: bool = False  # obj is every row in order, once (each block in one copied page)


def _no_objects(n: int) -> _Overlap:
    empty = np.zeros(0, dtype=np.int64)
    return _Overlap(empty, empty, empty)


def _overlaps(addrs: U64, obj: _Objects) -> _Overlap:
    """Every (object, copied page) pair that overlaps, with the bytes of the overlap.

    Most blocks lie inside one page: they take one searchsorted; only blocks spanning pages
    (large buffers, blocks across a page boundary) are expanded page by page.
    """
    if len(obj.block_start) == 0 or len(addrs) == 0:
        return _no_objects(len(addrs))
    mask = ~(_PAGE - np.uint64(1))
    first = obj.block_start & mask
    last = (obj.block_end - np.uint64(1)) & mask
    # Blocks are sorted, so their first pages come in runs: look up each run once.
    change = np.flatnonzero(first[1:] != first[:-1]) + 1
    run_start = np.concatenate(([0], change)).astype(np.int64)
    run_len = np.diff(np.concatenate((run_start, [len(first)]))).astype(np.int64)
    p0 = np.repeat(np.searchsorted(addrs, first[run_start]).astype(np.int64), run_len)
    single = first == last
    n = len(addrs)
    found = addrs[np.minimum(p0, n - 1)] == first
    found &= p0 < n
    size = (obj.block_end - obj.block_start).astype(np.int64)
    keep1 = single & found
    if bool(keep1.all()):  # every block inside one copied page
        return _Overlap(np.arange(len(first), dtype=np.int64), p0, size, identity=True)
    rows1 = np.flatnonzero(keep1)
    page1 = p0[keep1]
    bytes1 = size[keep1]

    multi = np.flatnonzero(~single)
    p1 = np.searchsorted(addrs, last[multi], side="right").astype(np.int64)
    count = np.maximum(p1 - p0[multi], 0)
    rows = np.repeat(multi, count)
    offsets = np.repeat(np.cumsum(count) - count, count)
    page = np.repeat(p0[multi], count) + (np.arange(len(rows), dtype=np.int64) - offsets)
    lo = np.maximum(obj.block_start[rows], addrs[page])
    hi = np.minimum(obj.block_end[rows], addrs[page] + _PAGE)
    nbytes = (hi.astype(np.int64) - lo.astype(np.int64))
    keep = nbytes > 0
    return _Overlap(
        np.concatenate((rows1, rows[keep])),
        np.concatenate((page1, page[keep])),
        np.concatenate((bytes1, nbytes[keep])),
    )


def _summarise(
    page_cause: U8,
    overlap: _Overlap,
    type_names: list[str],
    n: int,
    obj: _Objects | None = None,
) -> CauseResult:
    nc = len(CAUSES)
    cause = page_cause.astype(np.int64)
    by_cause_pages = np.bincount(cause, minlength=nc)
    by_cause = {c: int(by_cause_pages[i]) * PAGE_SIZE for i, c in enumerate(CAUSES)}
    names = [*type_names, UNATTRIBUTED]
    un = len(type_names)
    if obj is None:
        types = np.zeros(0, dtype=np.int64)
    else:
        types = obj.type_index if overlap.identity else obj.type_index[overlap.obj]
    parsed = np.bincount(
        types * nc + cause[overlap.page], weights=overlap.nbytes, minlength=un * nc
    ).reshape(un, nc)
    # Blocks are disjoint (pool blocks, malloc chunks), so per cause the bytes no block
    # covers are the cause's pages less the parsed bytes in them.
    leftover = np.maximum(by_cause_pages * PAGE_SIZE - parsed.sum(axis=0), 0)
    table = np.vstack((parsed, leftover[None, :]))
    objects = np.zeros(len(names), dtype=np.int64)
    if obj is not None and len(overlap.obj):
        if overlap.identity:
            seen = ~obj.is_buffer
        else:
            seen = np.zeros(len(obj.type_index), dtype=np.bool_)
            seen[overlap.obj] = True
            seen &= ~obj.is_buffer
        objects[:un] = np.bincount(obj.type_index[seen], minlength=un)[:un]
    totals = table.sum(axis=1)
    by_type: list[TypeBytes] = []
    by_type_cause: dict[str, dict[str, int]] = {}
    for t in np.argsort(-totals, kind="stable").tolist():
        nbytes = round(float(totals[t]))
        if nbytes <= 0:
            continue
        by_type.append(TypeBytes(names[t], nbytes, int(objects[t])))
        by_type_cause[names[t]] = {
            CAUSES[c]: round(float(table[t, c])) for c in range(nc) if table[t, c] >= 0.5
        }
    return CauseResult(
        by_cause={c: b for c, b in by_cause.items() if b},
        by_type=by_type,
        by_type_cause=by_type_cause,
        page_cause=page_cause,
    )
