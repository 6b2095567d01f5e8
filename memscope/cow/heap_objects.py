"""Find the Python object inside each allocator block, and the type it has (vectorised).

For every block we look at its first words. The object may start at block+0 (types without
GC), block+16 (after a PyGC_Head) or block+32 (3.11+: two pre-header words before the GC
head). At each candidate offset the first word must look like a refcount and the second like
a pointer into a readable mapping; the distinct candidate pointers (few: they are the types of
real objects) are validated one by one as type objects, and a block is typed only when the
type's own pre-header size equals the offset tried and its smallest instance fits the block
(tp_basicsize, except str: a compact ASCII str is smaller than sizeof(PyUnicodeObject)).
Smallest offset wins.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from memscope.cow.cpython._types import TypeInfo, TypeResolver
from memscope.cow.memreader import USER_END
from memscope.procfs import MapEntry

__all__ = ["WordGetter", "locate_objects", "mapped_mask"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
# words(k, rows) -> the k-th 8-byte word of each block in `rows` (None: of every block)
WordGetter = Callable[[int, "I64 | None"], U64]

# Admits 3.12/3.13 immortal 0xFFFFFFFF and 3.14+ 3 << 30 (after Layout.refcnt_mask).
_MAX_REFCNT = np.uint64(1 << 40)


def mapped_mask(maps: list[MapEntry], ptrs: U64) -> BOOL:
    """Which pointers fall inside a readable mapping."""
    readable = sorted((m.start, m.end) for m in maps if m.perms.startswith("r"))
    if not readable:
        return np.zeros(len(ptrs), dtype=np.bool_)
    starts = np.array([s for s, _ in readable], dtype=np.uint64)
    ends = np.array([e for _, e in readable], dtype=np.uint64)
    i = np.searchsorted(starts, ptrs, side="right").astype(np.int64) - 1
    ok = i >= 0
    i = np.maximum(i, 0)
    return ok & (ptrs < ends[i])


def _runs(values: U64, size: I64) -> tuple[I64, I64]:
    """Start index and length of each run of neighbours with equal values and sizes."""
    if not len(values):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    edge = np.empty(len(values), dtype=np.bool_)
    edge[0] = True
    np.not_equal(values[1:], values[:-1], out=edge[1:])
    edge[1:] |= size[1:] != size[:-1]
    heads = np.flatnonzero(edge)
    lengths = np.diff(np.append(heads, len(values)))
    return heads, lengths


def locate_objects(
    resolver: TypeResolver,
    maps: list[MapEntry],
    size: I64,
    words: WordGetter,
) -> tuple[I64, I64, list[TypeInfo]]:
    """Type slot and object offset in the block, for each block.

    Slot 0 means "no object found"; slot i > 0 is `types[i - 1]`. Neighbouring blocks mostly
    hold objects of one type, so candidate type pointers are handled per run of equal values:
    each distinct value is validated once (in Python), and the verdict is expanded back over
    its runs with np.repeat.
    """
    n = len(size)
    slot = np.zeros(n, dtype=np.int64)
    obj_off = np.zeros(n, dtype=np.int64)
    types: list[TypeInfo] = []
    slot_of: dict[int, int] = {}  # type address -> slot (0: not a type)
    todo: I64 | None = None  # None: every block
    mask = np.uint64(resolver.layout.refcnt_mask)
    for off in resolver.layout.object_offsets:
        if todo is None:
            rows: I64 | None = None
            rsize = size
        else:
            todo = todo[size[todo] >= off + 16]
            rows, rsize = todo, size[todo]
            if not len(todo):
                break
        refcnt = words(off // 8, rows)
        if mask != np.uint64(-1 & 0xFFFFFFFFFFFFFFFF):
            refcnt &= mask
        cand = words(off // 8 + 1, rows)
        # Without a plausible refcount there is no candidate (0 is never a type).
        cand[refcnt - np.uint64(1) >= _MAX_REFCNT] = 0
        heads, lengths = _runs(cand, rsize)
        run_values = cand[heads]
        uniq = np.unique(run_values)
        sane = (uniq & np.uint64(7) == 0) & (uniq > np.uint64(4096)) & (uniq < np.uint64(USER_END))
        sane[sane] = mapped_mask(maps, uniq[sane])
        uniq_slot = np.zeros(len(uniq), dtype=np.int64)
        for j in np.flatnonzero(sane).tolist():
            t = int(uniq[j])
            if t not in slot_of:
                info = resolver.get(t)
                if info is not None:
                    types.append(info)
                slot_of[t] = len(types) if info is not None else 0
            uniq_slot[j] = slot_of[t]
        pre = np.array([-1] + [t.preheader for t in types], dtype=np.int64)  # by slot
        fits = np.array([0] + [t.preheader + t.smallest for t in types], dtype=np.int64)
        run_slot = uniq_slot[np.searchsorted(uniq, run_values)]
        # Plausible refcount, a type with this pre-header whose fixed part fits the block
        # (a run has one size, so this is decided per run).
        run_ok = (pre[run_slot] == off) & (fits[run_slot] <= rsize[heads])
        ok = np.repeat(run_ok, lengths)
        if rows is None:
            slot = np.repeat(np.where(run_ok, run_slot, 0), lengths)
            obj_off = np.repeat(np.where(run_ok, off, 0), lengths)
            todo = np.flatnonzero(~ok)
        else:
            slot[rows[ok]] = np.repeat(run_slot[run_ok], lengths[run_ok])
            obj_off[rows[ok]] = off
            todo = rows[~ok]
    return slot, obj_off, types
