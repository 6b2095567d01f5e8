"""Detect which interpreter a process runs, from outside, without changing it.

Method (recorded in `Target.method`):

1. Names: /proc/PID/maps and /proc/PID/exe are searched for `libpython3.X[t][d].so` (shared
   builds, e.g. pyenv's) or `python3.X[t][d]` (statically linked executables, e.g. Debian's).
   `t` marks a free-threaded build and `d` a debug build. `pypy` in a path marks PyPy.
2. Symbols: the interpreter image (that libpython, or the executable) is parsed as ELF. It must
   define `PyType_Type`, else the process is "not Python".
3. Version from memory: `Py_Version` (3.11+, a PY_VERSION_HEX constant) is read from the
   target at load bias + st_value; before 3.11, the static `version` buffer that
   `Py_GetVersion()` fills at start-up (a local symbol in .symtab, `version.0`) is read as a
   string. If neither is available (stripped image), the PY_VERSION literal is searched in
   the image's bytes, constrained by the major.minor from the name.
4. Debug builds are also recognised by Py_REF_DEBUG symbols (`_Py_RefTotal`,
   `_Py_GetGlobalRefTotal`, `_Py_NegativeRefcount`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from memscope.cow.cpython._elf import ElfError, ElfImage, parse_elf
from memscope.cow.memreader import MemReader, Unmapped
from memscope.procfs import AccessDenied, MapEntry, ProcFS

__all__ = ["SUPPORTED_RANGE", "Target", "detect_target"]

SUPPORTED_RANGE = ((3, 8), (3, 15))

_LIB_RE = re.compile(r"/libpython(\d)\.(\d+)(t?)(d?)\.so(?:\.[\d.]+)?$")
_EXE_RE = re.compile(r"/python(\d)\.(\d+)(t?)(d?)$")
_PYPY_RE = re.compile(r"^(?:libpypy|pypy)", re.IGNORECASE)
_VERSION_STR_RE = re.compile(rb"^(\d+)\.(\d+)\.(\d+)")
_WANTED = {
    "Py_Version",
    "PyType_Type",
    "Py_GetVersion",
    "version",
    "version.0",
    "_Py_RefTotal",
    "_Py_GetGlobalRefTotal",
    "_Py_NegativeRefcount",
}
_DEBUG_SYMBOLS = ("_Py_RefTotal", "_Py_GetGlobalRefTotal", "_Py_NegativeRefcount")
# Parsed images by (path, device, inode): the workers of one tree share their interpreter.
_ELF_CACHE: dict[tuple[str, str, int], ElfImage] = {}
_ELF_CACHE_MAX = 8


@dataclass(frozen=True)
class Target:
    """What runs in a process, and whether its heap can be parsed."""

    pid: int
    implementation: str  # "cpython", "pypy" or "unknown"
    version: tuple[int, int, int] | None
    free_threaded: bool = False
    debug: bool = False
    supported: bool = False
    reason: str = ""  # why heap parsing is not possible (empty when supported)
    image: str | None = None  # libpython or executable holding the interpreter
    method: str = ""  # how the version was found
    symbols: dict[str, int] = field(default_factory=dict)  # runtime addresses

    @property
    def minor(self) -> tuple[int, int]:
        return (self.version[0], self.version[1]) if self.version else (0, 0)

    def describe(self) -> str:
        if self.implementation != "cpython" or self.version is None:
            return f"{self.implementation}: {self.reason}" if self.reason else self.implementation
        flags = ("t" if self.free_threaded else "") + ("d" if self.debug else "")
        text = "CPython {}.{}.{}{}".format(*self.version, flags)
        return text if self.supported else f"{text} ({self.reason})"


def _image_from_names(
    maps: list[MapEntry], exe: str | None
) -> tuple[str | None, re.Match[str] | None]:
    for m in maps:
        match = _LIB_RE.search(m.path)
        if match:
            return m.path, match
    if exe:
        match = _EXE_RE.search(exe)
        return exe, match
    return None, None


def detect_target(pid: int, procfs: ProcFS | None = None) -> Target:
    """Identify the interpreter of `pid` (see the module docstring for the method)."""
    procfs = procfs if procfs is not None else ProcFS()
    maps = procfs.maps(pid)
    exe = procfs.exe(pid)
    paths = [m.path for m in maps] + ([exe] if exe else [])
    if any(_PYPY_RE.match(p.rsplit("/", 1)[-1]) for p in paths):
        return Target(pid, "pypy", None, reason="PyPy: no CPython heap layout; page-level only")
    image_path, match = _image_from_names(maps, exe)
    if image_path is None:
        return Target(pid, "unknown", None, reason="no executable image: not Python")
    try:
        elf = _load_image(pid, procfs, maps, image_path)
    except (ElfError, OSError) as exc:
        return Target(pid, "unknown", None, image=image_path, reason=f"unreadable image: {exc}")
    if "PyType_Type" not in elf.symbols:
        return Target(pid, "unknown", None, image=image_path, reason="not a Python interpreter")
    base = next(
        (m.start for m in maps if m.path == image_path and m.offset == 0),
        None,
    )
    if base is None:
        return Target(pid, "cpython", None, image=image_path, reason="interpreter image not mapped")
    bias = elf.load_bias(base)
    symbols = {name: bias + value for name, (value, _size) in elf.symbols.items()}
    name_minor = (int(match.group(1)), int(match.group(2))) if match else None
    free_threaded = bool(match and match.group(3))
    version, method = _version_from_memory(pid, procfs, symbols)
    if version is None:
        data = procfs.read(pid, "root" + image_path)
        version, method = _version_from_image(elf, data, name_minor)
    if version is None:
        return Target(pid, "cpython", None, image=image_path, reason="version not found")
    if name_minor and name_minor != version[:2]:
        method += f" (file name says {name_minor[0]}.{name_minor[1]})"
    debug = bool(match and match.group(4)) or any(s in elf.symbols for s in _DEBUG_SYMBOLS)
    reason = _unsupported_reason(version, free_threaded, debug)
    return Target(
        pid,
        "cpython",
        version,
        free_threaded=free_threaded,
        debug=debug,
        supported=not reason,
        reason=reason,
        image=image_path,
        method=method,
        symbols=symbols,
    )


def _load_image(pid: int, procfs: ProcFS, maps: list[MapEntry], path: str) -> ElfImage:
    entry = next((m for m in maps if m.path == path), None)
    key = (path, entry.dev, entry.inode) if entry is not None else None
    if key is not None and key in _ELF_CACHE:
        return _ELF_CACHE[key]
    loaded = parse_elf(procfs.read(pid, "root" + path), _WANTED)
    if key is not None:
        if len(_ELF_CACHE) >= _ELF_CACHE_MAX:
            _ELF_CACHE.pop(next(iter(_ELF_CACHE)))
        _ELF_CACHE[key] = loaded
    return loaded


def _version_from_memory(
    pid: int, procfs: ProcFS, symbols: dict[str, int]
) -> tuple[tuple[int, int, int] | None, str]:
    try:
        reader = MemReader(pid, procfs)
    except AccessDenied:  # no ptrace rights: the image's bytes still tell the version
        return None, ""
    with reader:
        try:
            if "Py_Version" in symbols:
                raw = reader.read(symbols["Py_Version"], 4)
                return _decode_hexversion(raw), "Py_Version symbol read from memory"
            for name in ("version.0", "version"):
                if name in symbols:
                    text = reader.read_cstring(symbols[name], 250)
                    found = _VERSION_STR_RE.match(text)
                    if found:
                        version = (int(found[1]), int(found[2]), int(found[3]))
                        return version, f"Py_GetVersion buffer ({name} in .symtab) read from memory"
        except Unmapped:
            pass
    return None, ""


def _version_from_image(
    elf: ElfImage, data: bytes, name_minor: tuple[int, int] | None
) -> tuple[tuple[int, int, int] | None, str]:
    """Version from the file when memory cannot be read (no ptrace rights)."""
    if "Py_Version" in elf.symbols:
        offset = elf.file_offset(elf.symbols["Py_Version"][0])
        if offset is not None:
            return _decode_hexversion(data[offset : offset + 4]), "Py_Version symbol in the image"
    if name_minor is None:
        return None, ""
    # PY_VERSION: linkers merge string tails, so the literal may end a longer string (a
    # pyenv prefix such as ".../versions/3.8.18"); take the most frequent spelling.
    pattern = rb"[\x00/-](%d)\.(%d)\.(\d+)(?:(?:a|b|rc)\d+)?\+?\x00" % name_minor
    found = Counter((int(m[1]), int(m[2]), int(m[3])) for m in re.finditer(pattern, data))
    if not found:
        return None, ""
    return found.most_common(1)[0][0], "PY_VERSION string in the image (heuristic)"


def _decode_hexversion(raw: bytes) -> tuple[int, int, int]:
    value = int.from_bytes(raw, "little")
    return value >> 24, (value >> 16) & 0xFF, (value >> 8) & 0xFF


def _unsupported_reason(version: tuple[int, int, int], free_threaded: bool, debug: bool) -> str:
    if free_threaded:
        return "free-threaded build (mimalloc heap, other object header): page-level only"
    if debug:
        return "debug build (debug allocator hooks change block layout): page-level only"
    low, high = SUPPORTED_RANGE
    if version[:2] < low:
        return f"CPython {version[0]}.{version[1]} is older than {low[0]}.{low[1]}: page-level only"
    if version[:2] > high:
        return (
            f"CPython {version[0]}.{version[1]} layouts are untested "
            f"(newest tested {high[0]}.{high[1]}): page-level only"
        )
    return ""
