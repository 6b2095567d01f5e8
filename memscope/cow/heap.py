"""Python objects in a set of pages of a CPython process, found from outside.

Public entry point::

    target = detect_target(pid, procfs)          # memscope.cow.cpython
    with MemReader(pid, procfs) as reader:       # memscope.cow.memreader
        heap = parse_heap(target, reader, page_addrs, page_bytes)

`page_addrs` (uint64, 4 KiB aligned) and `page_bytes` (uint8, shaped (n, 4096)) are the pages
to explain, e.g. a worker's copied pages as read once by the scanner. The result is a
`HeapMap` (memscope.cow._model): one row per allocated block overlapping those pages:

- pymalloc blocks of valid pools (heap_pymalloc), and in-use glibc malloc chunks of `[heap]`
  and of mmapped allocations (heap_malloc);
- each block typed by the Python object found in it (heap_objects), the type named and
  qualified with its module for classes (`__main__.Record`);
- blocks without an object header but pointed to by a typed owner (list items, dict keys and
  values, set tables, bytearray/array/numpy data, 3.11/3.12 managed-dict values) carry the
  owner's type and `is_buffer`; other blocks are typed `buffer`. On 3.15 a bytearray keeps
  its data in a bytes object: that bytes object is the bytearray's buffer too.

Free blocks are not listed. `allocator_ranges` holds pool headers, free-list words of free
pymalloc blocks and malloc size words: the bytes the allocator itself writes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from memscope.cow._model import HeapMap
from memscope.cow.cpython import Target, layout_for
from memscope.cow.cpython._layout import TPFLAGS, Layout
from memscope.cow.cpython._types import TypeInfo, TypeResolver
from memscope.cow.heap_index import HeapIndex
from memscope.cow.heap_malloc import Chunks, find_chunks
from memscope.cow.heap_objects import WordGetter, locate_objects
from memscope.cow.heap_pymalloc import PoolBlocks, find_pool_blocks
from memscope.cow.heap_snapshot import Snapshot
from memscope.cow.memreader import USER_END, MemReader

__all__ = ["BUFFER", "UnsupportedTarget", "parse_heap"]

BUFFER = "buffer"
_NO_FIELD = np.iinfo(np.int64).min
WINDOW_WORDS = 6  # words read at the start of each malloc chunk
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


class UnsupportedTarget(ValueError):
    """parse_heap was given a target whose heap layout is not known (see Target.reason)."""


def _owner_fields(layout: Layout) -> dict[str, tuple[int, ...]]:
    return {
        "list": (layout.list_items,),
        "dict": (layout.dict_keys, layout.dict_values),
        "set": (layout.set_table,),
        "frozenset": (layout.set_table,),
        "bytearray": (layout.bytearray_bytes,),
        "array.array": (layout.array_items,),
        "numpy.ndarray": (layout.ndarray_data,),
    }


def parse_heap(
    target: Target,
    reader: MemReader,
    page_addrs: U64,
    page_bytes: npt.NDArray[np.uint8],
    heap_index: HeapIndex | None = None,
) -> HeapMap:
    """HeapMap of the objects and buffers in the given pages (see the module docstring).

    `heap_index`: chunk boundaries of the parent's `[heap]` (heap_index.heap_index_for), so
    that `[heap]` is not walked from its start for every call.
    """
    if not target.supported or target.version is None:
        raise UnsupportedTarget(target.reason or "unsupported target")
    layout = layout_for(target.minor)
    snap = Snapshot(reader, page_addrs, page_bytes)
    pools = find_pool_blocks(layout, snap)
    chunks = find_chunks(layout, snap, pools.pool_addrs, heap_index)
    # One table of blocks: malloc chunks (user data at chunk+16), then pymalloc blocks (each
    # in address order). Rows are put in address order at the end; `[heap]` usually lies
    # below the pymalloc arenas, and then they already are.
    start = np.concatenate((chunks.addr + np.uint64(16), pools.addr))
    size = np.concatenate((chunks.size - 16, pools.size))
    words = _word_getter(pools, chunks, snap)
    resolver = TypeResolver(layout, reader)
    row_slot, obj_off, infos = locate_objects(resolver, reader.maps(), size, words)
    types = _TypeTable(infos, row_slot)
    gc_tracked = _gc_tracked(types, obj_off, words)
    # Two sorted runs (chunks, then pool blocks): merge them by slices, not a sort.
    pieces = _merge_pieces(start[: len(chunks.addr)], pools.addr)
    if len(chunks.addr) and pieces != [(0, len(start))]:
        start, size, obj_off, gc_tracked, types.row_type = (
            np.concatenate([a[lo:hi] for lo, hi in pieces])
            for a in (start, size, obj_off, gc_tracked, types.row_type)
        )
    is_buffer = types.row_type == 0
    obj_start = start + obj_off.astype(np.uint64)
    type_index = types.name_index[types.row_type]
    owner_ptrs, owner_types = _attribute_buffers(
        layout, snap, types, obj_start, start, size, type_index, is_buffer
    )
    allocator = np.concatenate(
        (
            np.stack((pools.pool_addrs, pools.pool_addrs + np.uint64(layout.pool_header)), axis=1),
            np.stack((pools.free_addr, pools.free_addr + np.uint64(8)), axis=1),
            np.stack((chunks.addr + np.uint64(8), chunks.addr + np.uint64(16)), axis=1),
        )
    ).astype(np.uint64)
    return HeapMap(
        start=obj_start,
        block_start=start,
        block_size=size,
        type_index=type_index,
        gc_tracked=gc_tracked,
        is_buffer=is_buffer,
        type_names=types.names,
        allocator_ranges=allocator[np.argsort(allocator[:, 0], kind="stable")],
        pools=pools.pool_addrs,
        pool_size=layout.pool_size,
        owner_ptrs=owner_ptrs,
        owner_types=owner_types,
    )


def _merge_pieces(a: U64, b: U64) -> list[tuple[int, int]]:
    """Index ranges of concat(a, b) (a: chunks, b: pool blocks, both sorted) whose
    concatenation is sorted. Chunks come in a few groups between pool blocks: few pieces."""
    ins = np.searchsorted(b, a)  # where each chunk goes among the pool blocks
    at, first, count = np.unique(ins, return_index=True, return_counts=True)
    pieces: list[tuple[int, int]] = []
    prev = 0
    for pos, lo, n in zip(at.tolist(), first.tolist(), count.tolist(), strict=True):
        if pos > prev:
            pieces.append((len(a) + prev, len(a) + pos))
        pieces.append((lo, lo + n))
        prev = pos
    if prev < len(b):
        pieces.append((len(a) + prev, len(a) + len(b)))
    # Adjacent ranges (chunks all below the pools: [(0, nc), (nc, n)]) join into one.
    merged: list[tuple[int, int]] = []
    for lo, hi in pieces:
        if merged and merged[-1][1] == lo:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _word_getter(pools: PoolBlocks, chunks: Chunks, snap: Snapshot) -> WordGetter:
    """words(k, rows): k-th word of blocks (chunks first, then pool blocks), read in place."""
    nchunk = len(chunks.addr)
    user = chunks.addr + np.uint64(16)
    chunk_words, _ = snap.words(
        (user[:, None] + (np.arange(WINDOW_WORDS, dtype=np.uint64) * np.uint64(8))).ravel()
    )
    chunk_words = chunk_words.reshape(-1, WINDOW_WORDS)

    def words(k: int, rows: I64 | None) -> U64:
        if not len(chunk_words):
            return pools.words(snap, k, rows)
        column = min(k, WINDOW_WORDS - 1)
        if rows is None:
            out = np.empty(nchunk + len(pools.addr), dtype=np.uint64)
            out[:nchunk] = chunk_words[:, column]
            pools.words(snap, k, None, out=out[nchunk:])
            return out
        in_chunk = rows < nchunk
        out = np.empty(len(rows), dtype=np.uint64)
        out[in_chunk] = chunk_words[rows[in_chunk], column]
        out[~in_chunk] = pools.words(snap, k, rows[~in_chunk] - nchunk)
        return out

    return words


class _TypeTable:
    """The types found: row_type[i] is the type slot of block i (0: none, k: infos[k-1])."""

    def __init__(self, infos: list[TypeInfo], row_type: I64) -> None:
        self.infos = infos
        self.names = [BUFFER]
        slot_names = [0]
        for info in infos:
            if info.name not in self.names:
                self.names.append(info.name)
            slot_names.append(self.names.index(info.name))
        self.name_index = np.array(slot_names, dtype=np.int64)
        self.flags = np.array([0] + [t.flags for t in infos], dtype=np.uint64)
        self.row_type = row_type


def _gc_tracked(types: _TypeTable, obj_off: I64, words: WordGetter) -> npt.NDArray[np.bool_]:
    """GC type and a non-NULL _gc_next (untracked objects have _gc_next == 0)."""
    # A block is typed only where the type's pre-header equals the object's offset, so the
    # offset of a typed block follows from its slot: one gather of a small code per block.
    is_gc = (types.flags & np.uint64(TPFLAGS.HAVE_GC)) != 0
    pre = np.array([0] + [t.preheader for t in types.infos], dtype=np.int64)
    code = np.where(is_gc, pre // 16, 0).astype(np.int8)  # 1: GC head at -16, 2: at -32
    out = np.zeros(len(obj_off), dtype=np.bool_)
    if not code.any():
        return out
    block_code = code[types.row_type]
    for off in (16, 32):
        rows = np.flatnonzero(block_code == off // 16)
        out[rows] = words((off - 16) // 8, rows) != 0
    return out


def _attribute_buffers(
    layout: Layout,
    snap: Snapshot,
    types: _TypeTable,
    obj_start: U64,
    start: U64,
    size: I64,
    type_index: I64,
    is_buffer: npt.NDArray[np.bool_],
) -> tuple[U64, I64]:
    """Give untyped blocks the type of an owner object that points into them (in place).
    Returns the owners' pointers that land in no block here, or in one that reaches past
    these pages, with the owners' type index."""
    # Per type slot: up to three pointer fields (offsets from the object), and the
    # tp_dictoffset of instances whose __dict__ is a separate object.
    fields = _owner_fields(layout)
    nslots = len(types.infos) + 1
    offsets = np.full((nslots, 3), _NO_FIELD, dtype=np.int64)
    dict_offset = np.zeros(nslots, dtype=np.int64)
    for slot, info in enumerate(types.infos, start=1):
        row = list(fields.get(info.name, ()))
        if layout.values_pointer and info.flags & TPFLAGS.MANAGED_DICT:
            row.append(-layout.values_pointer)
        offsets[slot, : len(row)] = row
        if info.dictoffset and not info.flags & TPFLAGS.MANAGED_DICT:
            dict_offset[slot] = info.dictoffset
    interesting = (offsets != _NO_FIELD).any(axis=1) | (dict_offset > 0)
    candidates = np.flatnonzero(interesting[types.row_type])
    cand_slot = types.row_type[candidates]
    owners: list[I64] = []
    ptr_addrs: list[U64] = []
    for column in range(offsets.shape[1]):
        off = offsets[cand_slot, column]
        has = off != _NO_FIELD
        owners.append(candidates[has])
        # Negative offsets wrap around in uint64, which is what address arithmetic wants.
        ptr_addrs.append(obj_start[candidates[has]] + off[has].astype(np.uint64))
    via_dict: tuple[I64, U64] | None = None
    has_dict = dict_offset[cand_slot] > 0
    if has_dict.any():
        rows = candidates[has_dict]
        via_dict = rows, obj_start[rows] + dict_offset[cand_slot[has_dict]].astype(np.uint64)
    owner = np.concatenate(owners)
    ptrs, ok = snap.words(np.concatenate(ptr_addrs))
    if layout.tagged_values:
        # 3.12 dict-or-values: a values pointer has its low bit set; a dict pointer does not.
        ptrs = np.where(ptrs & np.uint64(1), ptrs - np.uint64(1), ptrs)
    # Instances with a __dict__ pointer (tp_dictoffset, 3.8-3.10 classes): the dict usually
    # lies elsewhere, but its split-table values array sits next to the instances.
    if via_dict is not None:
        rows, dict_ptr_addr = via_dict
        dicts, dict_ok = snap.words(dict_ptr_addr)
        usable = (
            dict_ok & (dicts != 0) & (dicts & np.uint64(7) == 0) & (dicts < np.uint64(USER_END))
        )
        rows, dicts = rows[usable], dicts[usable]
        values, values_ok = snap.words(dicts + np.uint64(layout.dict_values))
        owner = np.concatenate((owner, rows))
        ptrs = np.concatenate((ptrs, values))
        ok = np.concatenate((ok, values_ok))
    j = np.searchsorted(start, ptrs, side="right").astype(np.int64) - 1
    valid = ok & (ptrs != 0) & (j >= 0)
    j = np.maximum(j, 0)
    inside = valid & (ptrs < start[j] + size[j].astype(np.uint64))
    # Pointers to no block here, or to a block reaching past these pages (a caller parsing
    # its pages in slices types that block's bytes in the other slices with them).
    lo, hi = (snap.addrs[0], snap.addrs[-1] + np.uint64(4096)) if len(snap.addrs) else (0, 0)
    reaches_out = (start[j] < lo) | (start[j] + size[j].astype(np.uint64) > hi)
    foreign = ok & (ptrs != 0) & (~inside | reaches_out)
    foreign_ptrs, foreign_types = ptrs[foreign], type_index[owner[foreign]]
    target, owner = j[inside], owner[inside]
    untyped = types.row_type[target] == 0
    if layout.bytearray_bytes_object and {"bytes", "bytearray"} <= set(types.names):
        # 3.15: the bytes object a bytearray points into is its storage.
        untyped |= (type_index[target] == types.names.index("bytes")) & (
            type_index[owner] == types.names.index("bytearray")
        )
        is_buffer[target[untyped]] = True
    type_index[target[untyped]] = type_index[owner[untyped]]
    return foreign_ptrs, foreign_types
