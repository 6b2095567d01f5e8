"""Type objects of a target, read from outside: validation, names, module qualification.

A candidate address is accepted as a type object only if its own type (ob_type) carries
Py_TPFLAGS_TYPE_SUBCLASS (it is `type` or a metaclass), it is READY, its sizes are sane and
its tp_name is a printable C string. Heap types (classes) are qualified with the `__module__`
string found in their tp_dict, e.g. `__main__.Record`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from memscope.cow.cpython._layout import TPFLAGS, Layout
from memscope.cow.memreader import MemReader, Unmapped

__all__ = ["TypeInfo", "TypeResolver"]

_MAX_NAME = 200


@dataclass(frozen=True)
class TypeInfo:
    addr: int
    name: str  # qualified name, e.g. "int", "numpy.ndarray", "__main__.Record"
    flags: int
    basicsize: int
    itemsize: int
    preheader: int  # bytes between block start and the object
    dictoffset: int = 0  # tp_dictoffset: where an instance keeps its __dict__ pointer
    min_size: int = 0  # smallest instance in bytes, without pre-header (0: basicsize)

    @property
    def smallest(self) -> int:
        """Bytes the smallest instance takes from the object start."""
        return self.min_size or self.basicsize

    @property
    def is_gc(self) -> bool:
        return bool(self.flags & TPFLAGS.HAVE_GC)


class TypeResolver:
    """Validates and names type objects of one target, caching by address."""

    def __init__(self, layout: Layout, reader: MemReader) -> None:
        self.layout = layout
        self.reader = reader
        self._cache: dict[int, TypeInfo | None] = {}
        self._metatypes: dict[int, bool] = {}

    def get(self, addr: int) -> TypeInfo | None:
        if addr not in self._cache:
            try:
                self._cache[addr] = self._resolve(addr)
            except Unmapped:
                self._cache[addr] = None
        return self._cache[addr]

    def _is_metatype(self, addr: int) -> bool:
        if addr not in self._metatypes:
            try:
                flags = self.reader.read_u64(addr + self.layout.tp_flags)
                self._metatypes[addr] = bool(flags & TPFLAGS.TYPE_SUBCLASS)
            except Unmapped:
                self._metatypes[addr] = False
        return self._metatypes[addr]

    def _resolve(self, addr: int) -> TypeInfo | None:
        lay = self.layout
        if addr & 7 or addr < 4096:
            return None
        head = self.reader.read(addr, lay.tp_dictoffset + 8)
        refcnt, ob_type = struct.unpack_from("<QQ", head, 0)
        if refcnt == 0 or not self._is_metatype(ob_type):
            return None
        (name_ptr,) = struct.unpack_from("<Q", head, lay.tp_name)
        basicsize, itemsize = struct.unpack_from("<qq", head, lay.tp_basicsize)
        (flags,) = struct.unpack_from("<Q", head, lay.tp_flags)
        (tp_dict,) = struct.unpack_from("<Q", head, lay.tp_dict)
        (dictoffset,) = struct.unpack_from("<q", head, lay.tp_dictoffset)
        if (
            not flags & TPFLAGS.READY
            or not 16 <= basicsize <= 1 << 24
            or not 0 <= itemsize <= 1 << 16
        ):
            return None
        raw = self.reader.read_cstring(name_ptr, _MAX_NAME + 1)
        if not raw or len(raw) > _MAX_NAME or not all(32 < b < 127 for b in raw):
            return None
        name = raw.decode("ascii")
        if flags & TPFLAGS.HEAPTYPE and "." not in name:
            # A class: tp_name is its bare name; use __qualname__ and __module__.
            try:
                qualname = self.read_str(self.reader.read_u64(addr + lay.ht_qualname))
            except Unmapped:
                qualname = None
            if qualname and qualname.rsplit(".", 1)[-1] == name:
                name = qualname
            module = self._dict_str(tp_dict, "__module__") if tp_dict else None
            if module and module != "builtins":
                name = f"{module}.{name}"
        # str's tp_basicsize is sizeof(PyUnicodeObject) (80 bytes on 3.8-3.11), but a compact
        # ASCII str is only its header and characters: "k000000000001" takes 62 bytes there,
        # a 64-byte block that basicsize would reject.
        min_size = lay.unicode_ascii_data + 1 if name == "str" else 0
        return TypeInfo(
            addr,
            name,
            flags,
            basicsize,
            itemsize,
            lay.preheader(flags),
            max(dictoffset, 0),
            min_size,
        )

    # -- reading str and dict objects of the target ----------------------------------------

    def read_str(self, addr: int, limit: int = 256) -> str | None:
        """Value of a compact str object at `addr`, or None if it is not one."""
        lay = self.layout
        try:
            head = self.reader.read(addr, 40)
            length, _hash, state = struct.unpack_from("<qqI", head, 16)
            if not 0 <= length <= limit:
                return None
            kind = (state >> 2) & 7
            compact, ascii_ = (state >> 5) & 1, (state >> 6) & 1
            if not compact or kind not in (1, 2, 4):
                return None
            if ascii_:
                return self.reader.read(addr + lay.unicode_ascii_data, length).decode("ascii")
            data = self.reader.read(addr + lay.unicode_compact_data, length * kind)
            codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
            return data.decode(codec)
        except (Unmapped, UnicodeDecodeError):
            return None

    def _dict_str(self, dict_addr: int, key: str) -> str | None:
        """`d[key]` for a combined-table dict with str keys, if the value is a str."""
        for k, v in self._dict_items(dict_addr):
            if self.read_str(k) == key:
                return self.read_str(v)
        return None

    def _dict_items(self, dict_addr: int) -> list[tuple[int, int]]:
        lay = self.layout
        try:
            keys = self.reader.read_u64(dict_addr + lay.dict_keys)
            values = self.reader.read_u64(dict_addr + lay.dict_values)
            if values:  # split table: not what a class namespace uses
                return []
            if lay.dict_keys_new:
                hdr = self.reader.read(keys, 32)
                log2_size, log2_index_bytes, kind = hdr[8], hdr[9], hdr[10]
                nentries = struct.unpack_from("<q", hdr, 24)[0]
                if log2_size > 30 or log2_index_bytes > 33 or not 0 <= nentries <= 1 << 16:
                    return []
                start = keys + 32 + (1 << log2_index_bytes)
                width, key_at, value_at = (24, 8, 16) if kind == 0 else (16, 0, 8)
            else:
                size, _lookup, _usable, nentries = struct.unpack_from(
                    "<qQqq", self.reader.read(keys + 8, 32)
                )
                if not 0 < size <= 1 << 30 or not 0 <= nentries <= 1 << 16:
                    return []
                index_bytes = (
                    1 if size <= 0xFF else 2 if size <= 0xFFFF else 4 if size <= 0xFFFFFFFF else 8
                )
                start = keys + 40 + size * index_bytes
                width, key_at, value_at = 24, 8, 16
            table = self.reader.read(start, nentries * width)
        except Unmapped:
            return []
        items = []
        for i in range(nentries):
            (k,) = struct.unpack_from("<Q", table, i * width + key_at)
            (v,) = struct.unpack_from("<Q", table, i * width + value_at)
            if k and v:
                items.append((k, v))
        return items
