"""Minimal ELF64 little-endian reader: load segments and named symbols (stdlib struct only).

Used to find `Py_Version`, `PyType_Type` and the `version` buffer of `Py_GetVersion` in an
interpreter image (a libpython shared object or a statically linked python executable).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["ElfError", "ElfImage", "parse_elf"]

_SHT_SYMTAB = 2
_SHT_DYNSYM = 11
_PT_LOAD = 1
_ET_EXEC = 2


class ElfError(ValueError):
    """The bytes are not an ELF64 little-endian image we can read."""


@dataclass(frozen=True)
class ElfImage:
    """What we need from one ELF file: its type, first load vaddr and some symbols."""

    is_exec: bool  # ET_EXEC: absolute addresses (no load bias)
    first_load_vaddr: int  # p_vaddr of the PT_LOAD with file offset 0
    symbols: dict[str, tuple[int, int]]  # name -> (st_value, st_size), only the wanted ones
    has_symtab: bool  # a full (non-stripped) .symtab was present
    segments: tuple[tuple[int, int, int], ...] = ()  # PT_LOAD (vaddr, file offset, filesz)

    def file_offset(self, vaddr: int) -> int | None:
        """Where the initialised data at `vaddr` lives in the file (None: not in the file)."""
        for seg_vaddr, seg_offset, filesz in self.segments:
            if seg_vaddr <= vaddr < seg_vaddr + filesz:
                return seg_offset + vaddr - seg_vaddr
        return None

    def load_bias(self, offset0_map_start: int) -> int:
        """Bias to add to st_value, given where the file's offset-0 mapping starts."""
        if self.is_exec:
            return 0
        return offset0_map_start - self.first_load_vaddr


def parse_elf(data: bytes, wanted: set[str]) -> ElfImage:
    """Parse `data` (a whole ELF file) and return the symbols named in `wanted`.

    Symbols from .symtab (local ones included, e.g. `version.0`) win over .dynsym. A file
    that is cut short or inconsistent raises ElfError.
    """
    try:
        return _parse(data, wanted)
    except struct.error as exc:
        raise ElfError(f"truncated ELF file: {exc}") from None


def _parse(data: bytes, wanted: set[str]) -> ElfImage:
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF file")
    e_type = struct.unpack_from("<H", data, 16)[0]
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 32)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 54)
    first_vaddr = 0
    segments = []
    for i in range(e_phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize
        )
        if p_type != _PT_LOAD:
            continue
        segments.append((p_vaddr, p_offset, p_filesz))
        if p_offset == 0:
            first_vaddr = p_vaddr
    sections = []
    for i in range(e_shnum):
        off = e_shoff + i * e_shentsize
        if off + 64 > len(data):
            raise ElfError("truncated section header table")
        _name, sh_type, _fl, _addr, sh_offset, sh_size, sh_link, _info, _align, sh_entsize = (
            struct.unpack_from("<IIQQQQIIQQ", data, off)
        )
        sections.append((sh_type, sh_offset, sh_size, sh_link, sh_entsize))
    found: dict[str, tuple[int, int]] = {}
    has_symtab = False
    # .dynsym first, then .symtab overrides (it has the local symbols too).
    for want_type in (_SHT_DYNSYM, _SHT_SYMTAB):
        for sh_type, sh_offset, sh_size, sh_link, sh_entsize in sections:
            if sh_type != want_type or sh_entsize != 24 or sh_link >= len(sections):
                continue
            has_symtab = has_symtab or sh_type == _SHT_SYMTAB
            str_off, str_size = sections[sh_link][1], sections[sh_link][2]
            strtab = data[str_off : str_off + str_size]
            found.update(_scan_symbols(data[sh_offset : sh_offset + sh_size], strtab, wanted))
    return ElfImage(
        is_exec=e_type == _ET_EXEC,
        first_load_vaddr=first_vaddr,
        symbols=found,
        has_symtab=has_symtab,
        segments=tuple(segments),
    )


def _scan_symbols(table: bytes, strtab: bytes, wanted: set[str]) -> dict[str, tuple[int, int]]:
    # Compare raw names first: decoding every symbol name would dominate the cost.
    wanted_raw = {name.encode(): name for name in wanted}
    out: dict[str, tuple[int, int]] = {}
    for st_name, _info, _other, st_shndx, st_value, st_size in struct.iter_unpack(
        "<IBBHQQ", table[: len(table) - len(table) % 24]
    ):
        if st_shndx == 0 or st_name == 0:  # undefined or unnamed
            continue
        end = strtab.find(b"\0", st_name)
        name = wanted_raw.get(strtab[st_name:end])
        if name is not None:
            out[name] = (st_value, st_size)
    return out
