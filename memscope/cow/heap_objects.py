"""Find the Python object inside each allocator block, and the type it has (vectorised).

For every block we look at its first words. The object may start at block+0 (types without
GC), block+16 (after a PyGC_Head) or block+32 (3.11+: two pre-header words before the GC
head). At each candidate offset the first word must look like a refcount and the second like
a pointer into a readable mapping; the distinct candidate pointers (few: they are the types of
real objects) are validated one by one as type objects, and a block is typed only when the
type's own pre-header size equals the offset tried and its fixed size fits the block.
Smallest offset wins.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from memscope.cow.cpython._types import TypeInfo, TypeResolver
from memscope.cow.memreader import USER_END
from memscope.procfs import MapEntry

__all__ = ["WordGetter", "locate_objects", "mapped_mask", "small_unique"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
# words(k, rows) -> the k-th 8-byte word of each block in `rows`
WordGetter = Callable[[int, I64], U64]

_MAX_REFCNT = np.uint64(1 << 40)  # also admits 3.12/3.13 immortal 0xFFFFFFFF


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


def small_unique(values: U64) -> tuple[U64, I64]:
    """np.unique(values, return_inverse=True) for arrays with few distinct values, in runs.

    Neighbouring blocks mostly share a type, so runs are collapsed before sorting; the
    inverse is then a binary search over the (short) unique array.
    """
    if not len(values):
        return values, np.zeros(0, dtype=np.int64)
    heads = np.concatenate(([True], values[1:] != values[:-1]))
    uniq = np.unique(values[heads])
    return uniq, np.searchsorted(uniq, values).astype(np.int64)


def locate_objects(
    resolver: TypeResolver,
    maps: list[MapEntry],
    size: I64,
    words: WordGetter,
) -> tuple[U64, I64, dict[int, TypeInfo]]:
    """Type address (0 when none) and object offset in the block, for each block."""
    n = len(size)
    type_addr = np.zeros(n, dtype=np.uint64)
    obj_off = np.zeros(n, dtype=np.int64)
    found: dict[int, TypeInfo] = {}
    todo = np.arange(n, dtype=np.int64)
    for off in resolver.layout.object_offsets:
        todo = todo[size[todo] >= off + 16]
        if not len(todo):
            break
        refcnt = words(off // 8, todo)
        plausible = (refcnt > 0) & (refcnt < _MAX_REFCNT)
        rows = todo[plausible]
        cand = words(off // 8 + 1, rows)
        sane = (cand & np.uint64(7) == 0) & (cand > np.uint64(4096)) & (cand < np.uint64(USER_END))
        rows, cand = rows[sane], cand[sane]
        uniq, inverse = small_unique(cand)
        mapped = mapped_mask(maps, uniq)
        pre = np.full(len(uniq), -1, dtype=np.int64)
        fits = np.zeros(len(uniq), dtype=np.int64)
        for j in np.flatnonzero(mapped).tolist():
            t = int(uniq[j])
            info = resolver.get(t)
            if info is not None:
                found[t] = info
                pre[j] = info.preheader
                fits[j] = info.preheader + info.basicsize
        # The type's pre-header must match the offset and its fixed part must fit the block.
        ok = (pre[inverse] == off) & (fits[inverse] <= size[rows])
        hit = rows[ok]
        type_addr[hit] = cand[ok]
        obj_off[hit] = off
        resolved = np.zeros(n, dtype=np.bool_)
        resolved[hit] = True
        todo = todo[~resolved[todo]]
    return type_addr, obj_off, found
