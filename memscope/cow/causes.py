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

__all__ = ["CAUSES", "UNATTRIBUTED", "CauseResult", "PageDiff", "attribute", "attribute_diff"]

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
    return attribute_diff(addrs, PageDiff.of(child, parent, ok), ok, heap, pool_size)


@dataclass
class PageDiff:
    """Where child and parent pages differ: per page, and the differing u64 words."""

    differ: BOOL  # per page (False where a page was not read)
    page: I64  # differing words: page index
    word: I64  # and word index in the page (0..511)

    @staticmethod
    def of(child: U8, parent: U8, ok: BOOL, first: int = 0) -> PageDiff:
        """Compare (n, 4096) pages; `first` is added to the page indexes."""
        n = len(ok)
        cw = child.reshape(n, PAGE_SIZE).view(np.uint64)
        pw = parent.reshape(n, PAGE_SIZE).view(np.uint64)
        # Whole pages first; words only on the (few) pages that differ.
        differ = (cw != pw).any(axis=1) & ok
        rows = np.flatnonzero(differ)
        pi, wi = np.nonzero(cw[rows] != pw[rows])
        return PageDiff(differ, rows[pi] + first, wi.astype(np.int64))

    @staticmethod
    def concat(parts: list[PageDiff]) -> PageDiff:
        if not parts:
            none = np.zeros(0, dtype=np.int64)
            return PageDiff(np.zeros(0, dtype=np.bool_), none, none)
        return PageDiff(
            np.concatenate([p.differ for p in parts]),
            np.concatenate([p.page for p in parts]),
            np.concatenate([p.word for p in parts]),
        )


def attribute_diff(
    addrs: U64, diff: PageDiff, ok: BOOL, heap: HeapMap | None, pool_size: int = 0
) -> CauseResult:
    """`attribute` from a precomputed diff (the scanner compares as it reads the parent)."""
    n = len(addrs)
    page_diff = diff.differ & ok
    page_cause = np.full(n, _UNREAD, dtype=np.uint8)
    if heap is None:
        page_cause[ok] = np.where(page_diff[ok], _WRITE, _TRANSIENT)
        return _summarise(page_cause, _Coverage.empty(n, 0), [])

    obj = _Objects(heap)
    mine = page_diff[diff.page]
    pi = diff.page[mine]
    waddr = addrs[pi] + diff.word[mine].astype(np.uint64) * np.uint64(8)
    word_cause = _word_causes(waddr, obj, heap.allocator_ranges, pool_size)
    strongest = np.full(n, -1, dtype=np.int64)
    if len(pi):
        np.maximum.at(strongest, pi, word_cause)
    cover = _coverage(addrs, obj, len(heap.type_names))
    page_cause[page_diff] = strongest[page_diff]
    identical = ok & ~page_diff
    page_cause[identical] = np.where(cover.gc_pages[identical], _T_GC, _T_REF)
    return _summarise(page_cause, cover, heap.type_names)


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
        self.size = size.astype(np.int64, copy=False)
        self.block_end = bs + self.size.astype(np.uint64)
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
class _Coverage:
    """What the parsed blocks put in the copied pages, aggregated.

    Entries are (type, page, bytes) with repeats allowed: one per run of blocks of one type
    inside one page, one per (block, page) for blocks that span pages.
    """

    type_index: I64
    page: I64
    nbytes: I64
    objects: I64  # per type: live objects (not buffers) overlapping a copied page
    gc_pages: BOOL  # per page: holds a GC-tracked object

    @staticmethod
    def empty(n: int, ntypes: int) -> _Coverage:
        none = np.zeros(0, dtype=np.int64)
        objects = np.zeros(ntypes, dtype=np.int64)
        return _Coverage(none, none, none, objects, np.zeros(n, dtype=np.bool_))


def _coverage(addrs: U64, obj: _Objects, ntypes: int) -> _Coverage:
    """The blocks' bytes in the sorted copied pages `addrs`, by type and page.

    Blocks are sorted, so the blocks inside one page come in runs: each run is looked up
    once and summed with reduceat. Only blocks that span pages or start outside the copied
    pages (few: big buffers, blocks across a page boundary) are expanded page by page.
    """
    n, nb = len(addrs), len(obj.block_start)
    out = _Coverage.empty(n, ntypes)
    if nb == 0 or n == 0:
        return out
    first = obj.block_start & ~(_PAGE - np.uint64(1))
    edge = np.empty(nb, dtype=np.bool_)
    edge[0] = True
    np.not_equal(first[1:], first[:-1], out=edge[1:])
    run_start = np.flatnonzero(edge)
    run_first = first[run_start]
    run_page = np.searchsorted(addrs, run_first).astype(np.int64)
    run_found = run_page < n
    run_found[run_found] = addrs[run_page[run_found]] == run_first[run_found]
    # Simple: the block lies inside one copied page.
    simple = obj.block_end <= first + _PAGE
    if not run_found.all():
        simple &= np.repeat(run_found, np.diff(np.append(run_start, nb)))
    all_simple = bool(simple.all())
    # Segments: runs of simple blocks of one page, one type and one buffer flag.
    edge[1:] |= obj.type_index[1:] != obj.type_index[:-1]
    edge[1:] |= obj.is_buffer[1:] != obj.is_buffer[:-1]
    if not all_simple:
        edge[1:] |= simple[1:] != simple[:-1]
    segs = np.flatnonzero(edge)
    keep = simple[segs]
    nbytes = np.add.reduceat(obj.size, segs)[keep]
    seg, count = segs[keep], np.diff(np.append(segs, nb))[keep]
    seg_type = obj.type_index[seg]
    seg_run = np.searchsorted(run_start, seg, side="right") - 1
    live = ~obj.is_buffer[seg]
    out.objects += np.bincount(seg_type[live], weights=count[live], minlength=ntypes).astype(
        np.int64
    )
    tracked = obj.gc_tracked if all_simple else obj.gc_tracked & simple
    out.gc_pages[run_page[np.logical_or.reduceat(tracked, run_start)]] = True
    out.type_index, out.page, out.nbytes = seg_type, run_page[seg_run], nbytes
    if not all_simple:
        _add_spanning(out, addrs, obj, np.flatnonzero(~simple))
    return out


def _add_spanning(out: _Coverage, addrs: U64, obj: _Objects, multi: I64) -> None:
    """Add blocks `multi` (spanning pages, or outside the copied pages) page by page."""
    mask = ~(_PAGE - np.uint64(1))
    start, end = obj.block_start[multi], obj.block_end[multi]
    p0 = np.searchsorted(addrs, start & mask).astype(np.int64)
    p1 = np.searchsorted(addrs, (end - np.uint64(1)) & mask, side="right").astype(np.int64)
    count = np.maximum(p1 - p0, 0)
    rows = np.repeat(multi, count)
    offsets = np.repeat(np.cumsum(count) - count, count)
    page = np.repeat(p0, count) + (np.arange(len(rows), dtype=np.int64) - offsets)
    lo = np.maximum(obj.block_start[rows], addrs[page])
    hi = np.minimum(obj.block_end[rows], addrs[page] + _PAGE)
    nbytes = hi.astype(np.int64) - lo.astype(np.int64)
    keep = nbytes > 0
    rows, page, nbytes = rows[keep], page[keep], nbytes[keep]
    out.type_index = np.concatenate((out.type_index, obj.type_index[rows]))
    out.page = np.concatenate((out.page, page))
    out.nbytes = np.concatenate((out.nbytes, nbytes))
    seen = np.unique(rows)
    seen = seen[~obj.is_buffer[seen]]
    out.objects += np.bincount(obj.type_index[seen], minlength=len(out.objects))
    out.gc_pages[page[obj.gc_tracked[rows]]] = True


def _summarise(page_cause: U8, cover: _Coverage, type_names: list[str]) -> CauseResult:
    nc = len(CAUSES)
    cause = page_cause.astype(np.int64)
    by_cause_pages = np.bincount(cause, minlength=nc)
    by_cause = {c: int(by_cause_pages[i]) * PAGE_SIZE for i, c in enumerate(CAUSES)}
    names = [*type_names, UNATTRIBUTED]
    un = len(type_names)
    parsed = np.bincount(
        cover.type_index * nc + cause[cover.page], weights=cover.nbytes, minlength=un * nc
    ).reshape(un, nc)
    # Blocks are disjoint (pool blocks, malloc chunks), so per cause the bytes no block
    # covers are the cause's pages less the parsed bytes in them.
    leftover = np.maximum(by_cause_pages * PAGE_SIZE - parsed.sum(axis=0), 0)
    table = np.vstack((parsed, leftover[None, :]))
    objects = np.zeros(len(names), dtype=np.int64)
    objects[:un] = cover.objects[:un]
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
