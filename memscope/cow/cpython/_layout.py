"""Per-version memory layouts of CPython 3.8 to 3.15 (64-bit, default GIL build).

Every number here was checked against the Include/ headers of each version (Include/object.h,
Include/refcount.h, Include/cpython/object.h, Include/internal/pycore_object.h,
pycore_obmalloc.h, pycore_gc.h) and against live processes (tests/cow/test_heap_live.py,
tests/cow/test_type_sweep.py). docs/cow-heap.md has the table per version.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TPFLAGS", "Layout", "layout_for"]


class TPFLAGS:
    INLINE_VALUES = 1 << 2  # 3.13+
    MANAGED_WEAKREF = 1 << 3  # 3.12+
    MANAGED_DICT = 1 << 4  # 3.11+
    HEAPTYPE = 1 << 9
    READY = 1 << 12
    HAVE_GC = 1 << 14
    TYPE_SUBCLASS = 1 << 31


@dataclass(frozen=True)
class Layout:
    """Offsets and sizes the heap parser needs for one CPython minor version."""

    minor: tuple[int, int]
    pool_size: int  # pymalloc pool (4 KiB before 3.10, 16 KiB from 3.10 on 64-bit)
    arena_size: int  # pymalloc arena (256 KiB before 3.10, 1 MiB after)
    # Flags that add two pre-header words (dict/values and weakref) before the GC head.
    preheader_flags: int
    unicode_ascii_data: int  # offset of the characters of a compact ASCII str
    unicode_compact_data: int  # ... of a compact non-ASCII str
    dict_keys_new: bool  # 3.11+ PyDictKeysObject (log2 sizes, unicode entries of 16 bytes)
    # Pre-header word holding managed dict values (3.11: values*, 3.12: tagged dict-or-values)
    # as a negative offset from the object; 0 when values live inline or there is none.
    values_pointer: int
    tagged_values: bool  # 3.12: low bit 1 marks a values pointer
    ht_qualname: int  # PyHeapTypeObject.ht_qualname (measured: id() of __qualname__ in the type)
    # Bits of the first word that hold the reference count. 3.14+ splits it on 64-bit:
    # ob_refcnt (u32), ob_overflow (u16), ob_flags (u16; static objects carry flags << 48).
    refcnt_mask: int = (1 << 64) - 1
    # 3.15: a bytearray keeps its data in a bytes object (ob_bytes_object); 0 before.
    bytearray_bytes_object: int = 0

    pool_header: int = 48  # sizeof(struct pool_header), already 16-aligned
    alignment: int = 16  # pymalloc ALIGNMENT (3.8+)
    small_max: int = 512  # SMALL_REQUEST_THRESHOLD
    gc_head: int = 16  # sizeof(PyGC_Head)
    # PyTypeObject fields (identical 3.8 to 3.13 on 64-bit).
    tp_name: int = 24
    tp_basicsize: int = 32
    tp_itemsize: int = 40
    tp_flags: int = 168
    tp_base: int = 256
    tp_dict: int = 264
    tp_dictoffset: int = 288
    # Object fields used to attribute buffers to their owner (offset in the object).
    list_items: int = 24  # PyListObject.ob_item
    dict_keys: int = 32  # PyDictObject.ma_keys
    dict_values: int = 40  # PyDictObject.ma_values
    set_table: int = 40  # PySetObject.table
    bytearray_bytes: int = 32  # PyByteArrayObject.ob_bytes
    array_items: int = 24  # arrayobject.ob_item (array.array)
    ndarray_data: int = 16  # PyArrayObject_fields.data (numpy)

    def preheader(self, flags: int) -> int:
        """Bytes before the object inside its block (PyGC_Head and pre-header words)."""
        size = self.gc_head if flags & TPFLAGS.HAVE_GC else 0
        if flags & self.preheader_flags:
            size += 16
        return size

    @property
    def object_offsets(self) -> tuple[int, ...]:
        """Every possible distance from block start to object start, smallest first."""
        return (0, 16, 32) if self.preheader_flags else (0, 16)


def layout_for(minor: tuple[int, int]) -> Layout:
    """Layout of CPython `minor` (e.g. (3, 12)); raises ValueError outside 3.8 to 3.15."""
    if not (3, 8) <= minor <= (3, 15):
        raise ValueError(f"no heap layout for CPython {minor[0]}.{minor[1]}")
    large_pools = minor >= (3, 10)
    if minor >= (3, 12):
        preheader = TPFLAGS.MANAGED_DICT | TPFLAGS.MANAGED_WEAKREF
    elif minor == (3, 11):
        preheader = TPFLAGS.MANAGED_DICT
    else:
        preheader = 0
    no_wstr = minor >= (3, 12)
    return Layout(
        minor=minor,
        pool_size=16384 if large_pools else 4096,
        arena_size=(1 << 20) if large_pools else (1 << 18),
        preheader_flags=preheader,
        unicode_ascii_data=40 if no_wstr else 48,
        unicode_compact_data=56 if no_wstr else 72,
        dict_keys_new=minor >= (3, 11),
        values_pointer={(3, 11): 32, (3, 12): 24}.get(minor, 0),
        tagged_values=minor == (3, 12),
        ht_qualname=_HT_QUALNAME.get(minor, 864),
        refcnt_mask=(1 << 48) - 1 if minor >= (3, 14) else (1 << 64) - 1,
        bytearray_bytes_object=56 if minor >= (3, 15) else 0,
    )


# PyHeapTypeObject.ht_qualname, measured on each version (the word of a class that holds
# id(cls.__qualname__)); every other minor version has 864.
_HT_QUALNAME = {(3, 9): 856, (3, 12): 872, (3, 13): 872, (3, 14): 872, (3, 15): 880}
