"""pymalloc pools, vectorised: which blocks of the given pages are allocated.

A pool header (48 bytes) sits at `addr & ~(POOL-1)`:

    +0  ref.count (u32)   +8 freeblock   +16 nextpool   +24 prevpool
    +32 arenaindex (u32)  +36 szidx (u32) +40 nextoffset (u32) +44 maxnextoffset (u32)

Blocks of (szidx+1)*16 bytes start at pool+48. Blocks at or beyond `nextoffset` were never
handed out; blocks on the `freeblock` chain are free. Everything else is allocated. Headers
are validated exactly (maxnextoffset == POOL - size, nextoffset on a block boundary,
count <= used blocks, freeblock inside the pool) so random bytes are not taken for a pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from memscope.cow.cpython import Layout
from memscope.cow.heap_snapshot import WORDS_PER_PAGE, Snapshot, writable_regions
from memscope.cow.memreader import PAGE
from memscope.procfs import MapEntry

__all__ = ["PoolBlocks", "anon_rw_mask", "find_pool_blocks"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


@dataclass
class PoolBlocks:
    """Allocated pymalloc blocks overlapping the pages, and how to read their words."""

    addr: U64  # block start
    size: I64  # block size
    widx: I64  # word index of the block in the snapshot's array, -1 if its pool is split
    split: I64  # rows whose pool is split (widx -1), sorted
    split_pool: I64  # for those rows: index of the block's pool in pool_addrs
    split_offset: I64  # for those rows: offset of the block in its pool
    pool_addrs: U64  # valid pools (headers are allocator metadata)
    page_code: I64  # (pools, pages per pool): Snapshot codes of each pool page
    free_addr: U64  # free blocks on a free list that overlap the pages (first word: link)

    def words(
        self, snap: Snapshot, k: int, rows: I64 | None = None, out: U64 | None = None
    ) -> U64:
        """k-th word of the blocks `rows` (None: all), for k inside the blocks (into `out`)."""
        widx = self.widx if rows is None else self.widx[rows]
        if out is None:
            out = np.empty(len(widx), dtype=np.uint64)
        # Callers only read words inside the block, so the index stays in the array; rows of
        # split pools (widx -1) read a wrong word here and are redone below. Indexing a view
        # shifted by k saves adding k to every index.
        np.take(snap.main_words[k:], widx, out=out, mode="clip")
        if not len(self.split):
            return out
        if rows is None:
            split, j = self.split, np.arange(len(self.split))
        else:
            split = np.flatnonzero(widx < 0)
            j = np.searchsorted(self.split, rows[split])
        if len(split):
            off = self.split_offset[j] + 8 * k
            page = np.minimum(off // PAGE, self.page_code.shape[1] - 1)
            out[split] = snap.gather(self.page_code[self.split_pool[j], page], (off % PAGE) // 8)
        return out


def _compact(keep: npt.NDArray[np.bool_], *arrays: I64) -> list[I64]:
    """`a[keep]` for each array. Usually only a few free blocks are dropped: then the kept
    stretches are copied as slices, which is cheaper than a boolean mask per array."""
    drop = np.flatnonzero(~keep)
    if not len(drop):
        return list(arrays)
    if len(drop) > 1024:
        return [a[keep] for a in arrays]
    bounds = zip([0, *(drop + 1).tolist()], [*drop.tolist(), len(keep)], strict=True)
    pieces = [(lo, hi) for lo, hi in bounds if hi > lo] or [(0, 0)]
    return [np.concatenate([a[lo:hi] for lo, hi in pieces]) for a in arrays]


def anon_rw_mask(maps: list[MapEntry], addrs: U64, span: int) -> npt.NDArray[np.bool_]:
    """Which [addr, addr+span) ranges lie inside anonymous read-write memory."""
    anon = [(lo, hi) for path, lo, hi in writable_regions(maps) if not path]
    if not anon:
        return np.zeros(len(addrs), dtype=np.bool_)
    starts = np.array([s for s, _ in anon], dtype=np.uint64)
    ends = np.array([e for _, e in anon], dtype=np.uint64)
    i = np.searchsorted(starts, addrs, side="right").astype(np.int64) - 1
    ok = i >= 0
    i = np.maximum(i, 0)
    inside: npt.NDArray[np.bool_] = ok & (addrs >= starts[i]) & (addrs + np.uint64(span) <= ends[i])
    return inside


def find_pool_blocks(layout: Layout, snap: Snapshot) -> PoolBlocks:
    """Allocated blocks of every valid pool that overlaps the snapshot's pages."""
    pool = layout.pool_size
    ppp = pool // PAGE  # pages per pool
    hdr = layout.pool_header
    bases = np.unique(snap.addrs & ~np.uint64(pool - 1))
    bases = bases[anon_rw_mask(snap.reader.maps(), bases, pool)]
    # 1. Headers and their validation.
    head_code, head_ok = snap.ensure(bases)
    h = [snap.gather(head_code, np.full(len(bases), w, dtype=np.int64)) for w in range(6)]
    count = (h[0] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    freeblock = h[1]
    szidx = (h[4] >> np.uint64(32)).astype(np.int64)
    nextoff = (h[5] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    maxnext = (h[5] >> np.uint64(32)).astype(np.int64)
    size = (szidx + 1) * layout.alignment
    used = (nextoff - hdr) // size
    fb_off = freeblock.astype(np.int64) - bases.astype(np.int64)
    valid = (
        head_ok
        & (szidx < layout.small_max // layout.alignment)
        & (maxnext == pool - size)
        & (nextoff >= hdr + size)
        & (nextoff <= pool)
        & ((nextoff - hdr) % size == 0)
        & (count <= used)
        & ((freeblock == 0) | ((fb_off >= hdr) & (fb_off < pool) & ((fb_off - hdr) % size == 0)))
    )
    bases, size, used, freeblock = bases[valid], size[valid], used[valid], freeblock[valid]
    npools = len(bases)
    # 2. Every page of those pools: the snapshot's, the others read from the target.
    all_pages = (bases[:, None] + np.arange(ppp, dtype=np.uint64) * np.uint64(PAGE)).ravel()
    page_code, page_ok = snap.ensure(all_pages)
    page_code = page_code.reshape(npools, ppp)
    # 3. Blocks below nextoffset, minus the free chain (walked for all pools at once).
    # Block i of the table (pool p) starts at i * size[p] + (base[p] + hdr - first[p] *
    # size[p]): one multiply-add gives every address, and offsets are never materialised.
    first = np.zeros(npools + 1, dtype=np.int64)
    np.cumsum(used, out=first[1:])
    base_i = bases.astype(np.int64)
    block_size = np.repeat(size, used)
    addr = np.arange(int(first[-1]), dtype=np.int64)
    addr *= block_size
    addr += np.repeat(base_i + hdr - first[:-1] * size, used)
    free = np.zeros(len(addr), dtype=np.bool_)
    live = np.flatnonzero(freeblock != 0)
    off = fb_off[valid][live]
    for _ in range(pool // layout.alignment):
        inside = (
            (off >= hdr) & (off < hdr + used[live] * size[live]) & ((off - hdr) % size[live] == 0)
        )
        live, off = live[inside], off[inside]
        if not len(live):
            break
        free[first[live] + (off - hdr) // size[live]] = True
        nxt = snap.gather(page_code[live, off // PAGE], (off % PAGE) // 8).astype(np.int64)
        keep = nxt != 0
        live, off = live[keep], nxt[keep] - base_i[live[keep]]
    # 4. Allocated blocks that overlap one of the caller's pages (and were read). Most pools
    # are wholly in the snapshot, in consecutive rows: their blocks need no page arithmetic.
    in_snap = page_code >= 0
    flat = np.asarray(
        in_snap.all(axis=1) & (page_code - page_code[:, :1] == np.arange(ppp)).all(axis=1),
        dtype=np.bool_,
    )
    keep = ~free
    whole = np.asarray((in_snap & page_ok.reshape(npools, ppp)).all(axis=1), dtype=np.bool_)
    if not whole.all():
        # Blocks of partly held pools: keep those overlapping a held, readable page.
        part = np.flatnonzero(np.repeat(~whole, used))
        p_pool = np.searchsorted(first, part, side="right") - 1
        p_off = addr[part] - base_i[p_pool]
        wanted = in_snap & page_ok.reshape(npools, ppp)
        first_page, last_page = p_off // PAGE, (p_off + block_size[part] - 1) // PAGE
        readable = page_ok.reshape(npools, ppp)[p_pool, first_page]
        overlaps = (wanted[p_pool, first_page] | wanted[p_pool, last_page]) & readable
        keep[part[~overlaps]] = False
        free[part[~overlaps]] = False
    # Word index in the snapshot: for a flat pool, its first row * 512 + offset / 8, that is
    # addr / 8 + (first row * 512 - base / 8); negative for the blocks of split pools.
    shift = np.where(flat, page_code[:, 0] * WORDS_PER_PAGE - (base_i >> 3), -(1 << 60))
    widx = addr >> 3
    widx += np.repeat(shift, used)
    free_addr = addr[free].view(np.uint64)
    # Split pools are rare: keep pool and offset for their blocks only.
    split_src = np.flatnonzero(widx < 0) if not flat.all() else np.zeros(0, dtype=np.int64)
    split_src = split_src[keep[split_src]]
    split_pool = np.searchsorted(first, split_src, side="right") - 1
    split_offset = addr[split_src] - base_i[split_pool]
    addr, block_size, widx = _compact(keep, addr, block_size, widx)
    split = np.flatnonzero(widx < 0) if len(split_src) else split_src
    widx[split] = -1
    return PoolBlocks(
        addr=addr.view(np.uint64),
        size=block_size,
        widx=widx,
        split=split,
        split_pool=split_pool.astype(np.int64),
        split_offset=split_offset,
        pool_addrs=bases,
        page_code=page_code,
        free_addr=free_addr,
    )
