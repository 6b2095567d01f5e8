"""Pure parsers: the bytes of a /proc file in, typed records out.

Nothing here touches the filesystem, so every function can be fed captured text in tests.
Sizes are returned in bytes (the kernel prints kB, which means KiB).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import ParamSpec, TypeVar

from memscope.procfs._errors import MalformedProcFile

__all__ = [
    "MapEntry",
    "Mapping",
    "Rollup",
    "Stat",
    "Statm",
    "Status",
    "parse_maps",
    "parse_smaps",
    "parse_smaps_rollup",
    "parse_stat",
    "parse_statm",
    "parse_status",
    "sum_rollups",
]

PAGE_SIZE = 4096
PF_KTHREAD = 0x00200000  # include/linux/sched.h

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _parser(what: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Text not in the kernel's format raises MalformedProcFile, never ValueError/IndexError/
    UnicodeDecodeError from deep inside a parser."""

    def wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def parse(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return fn(*args, **kwargs)
            except (ValueError, IndexError, TypeError, OverflowError) as exc:
                raise MalformedProcFile(what, f"{type(exc).__name__}: {exc}") from None

        return parse

    return wrap

# smaps/smaps_rollup key -> Rollup attribute. Keys the kernel does not print stay 0
# (Pss_Anon/Pss_File/Pss_Shmem appeared in 5.x; older kernels lack them).
_ROLLUP_KEYS: dict[bytes, str] = {
    b"Rss": "rss",
    b"Pss": "pss",
    b"Pss_Dirty": "pss_dirty",
    b"Pss_Anon": "pss_anon",
    b"Pss_File": "pss_file",
    b"Pss_Shmem": "pss_shmem",
    b"Shared_Clean": "shared_clean",
    b"Shared_Dirty": "shared_dirty",
    b"Private_Clean": "private_clean",
    b"Private_Dirty": "private_dirty",
    b"Anonymous": "anonymous",
    b"Swap": "swap",
    b"SwapPss": "swap_pss",
    b"Private_Hugetlb": "private_hugetlb",
    b"Shared_Hugetlb": "shared_hugetlb",
}


@dataclass(slots=True)
class Rollup:
    """Memory totals of a process (smaps_rollup) or of one mapping (an smaps entry), in bytes."""

    rss: int = 0
    pss: int = 0
    pss_dirty: int = 0
    pss_anon: int = 0
    pss_file: int = 0
    pss_shmem: int = 0
    shared_clean: int = 0
    shared_dirty: int = 0
    private_clean: int = 0
    private_dirty: int = 0
    anonymous: int = 0
    swap: int = 0
    swap_pss: int = 0
    private_hugetlb: int = 0
    shared_hugetlb: int = 0

    @property
    def uss(self) -> int:
        """Unique set size: the memory freed if this process alone exited."""
        return self.private_clean + self.private_dirty + self.private_hugetlb

    @property
    def shared(self) -> int:
        return self.shared_clean + self.shared_dirty + self.shared_hugetlb


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def readable(self) -> bool:
        return self.perms[0] == "r"

    @property
    def writable(self) -> bool:
        return self.perms[1] == "w"

    @property
    def private(self) -> bool:
        return self.perms[3] == "p"


@dataclass(slots=True)
class Mapping:
    """One entry of /proc/PID/smaps: the mapping and its memory."""

    entry: MapEntry
    memory: Rollup = field(default_factory=Rollup)


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of /proc/PID/stat that memscope uses."""

    pid: int
    comm: str
    state: str
    ppid: int
    minflt: int  # minor faults (a copy-on-write break is one)
    utime_ticks: int
    stime_ticks: int
    num_threads: int
    start_ticks: int  # since boot, in clock ticks; with pid it identifies a process
    rss_pages: int
    exit_code: int | None  # only meaningful for zombies (field 52, Linux 3.5+)
    flags: int = 0  # field 9: PF_* flags (PF_KTHREAD marks a kernel thread)

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)


@dataclass(frozen=True, slots=True)
class Statm:
    """/proc/PID/statm converted to bytes. O(1) for the kernel to produce."""

    size: int
    resident: int
    shared: int  # resident file-backed + shmem pages
    text: int
    data: int


@dataclass(frozen=True, slots=True)
class Status:
    name: str
    state: str
    ppid: int
    uid: int
    threads: int
    vm_rss: int
    rss_anon: int
    rss_file: int
    rss_shmem: int
    vm_swap: int


def _kib_lines(data: bytes) -> Iterator[tuple[bytes, int]]:
    """Yield (key, bytes) for every 'Key:   123 kB' line; other lines are skipped."""
    for line in data.split(b"\n"):
        key, sep, rest = line.partition(b":")
        if not sep:
            continue
        parts = rest.split()
        if len(parts) == 2 and parts[1] == b"kB":
            yield key, int(parts[0]) * 1024


@_parser("smaps_rollup")
def parse_smaps_rollup(data: bytes) -> Rollup:
    """Parse /proc/PID/smaps_rollup (Linux 4.14+)."""
    rollup = Rollup()
    for key, value in _kib_lines(data):
        attr = _ROLLUP_KEYS.get(key)
        if attr is not None:
            setattr(rollup, attr, value)
    return rollup


def _parse_map_line(line: bytes) -> MapEntry:
    # "start-end perms offset dev inode   path" where path may contain spaces.
    parts = line.split(None, 5)
    lo, _, hi = parts[0].partition(b"-")
    path = parts[5].strip() if len(parts) > 5 else b""
    perms = parts[1].decode("ascii")
    if len(perms) != 4:
        raise ValueError(f"permissions {perms!r} are not 4 characters")
    return MapEntry(
        start=int(lo, 16),
        end=int(hi, 16),
        perms=perms,
        offset=int(parts[2], 16),
        dev=parts[3].decode("ascii"),
        inode=int(parts[4]),
        path=path.decode("utf-8", "surrogateescape"),
    )


def _is_map_header(line: bytes) -> bool:
    head = line.split(b" ", 1)[0]
    lo, sep, hi = head.partition(b"-")
    if not sep or not lo or not hi:
        return False
    try:
        int(lo, 16)
        int(hi, 16)
    except ValueError:
        return False
    return True


@_parser("maps")
def parse_maps(data: bytes) -> list[MapEntry]:
    """Parse /proc/PID/maps."""
    return [_parse_map_line(line) for line in data.split(b"\n") if line.strip()]


@_parser("smaps")
def parse_smaps(data: bytes) -> list[Mapping]:
    """Parse /proc/PID/smaps: one Mapping per mapping, with its memory counters."""
    mappings: list[Mapping] = []
    current: Mapping | None = None
    for line in data.split(b"\n"):
        if not line:
            continue
        if _is_map_header(line):
            current = Mapping(_parse_map_line(line))
            mappings.append(current)
            continue
        if current is None:
            continue
        key, sep, rest = line.partition(b":")
        attr = _ROLLUP_KEYS.get(key)
        if attr is None or not sep:
            continue
        parts = rest.split()
        if len(parts) == 2 and parts[1] == b"kB":
            setattr(current.memory, attr, int(parts[0]) * 1024)
    return mappings


def sum_rollups(rollups: list[Rollup]) -> Rollup:
    """Sum per-mapping counters into one process total, as smaps_rollup does."""
    total = Rollup()
    names = [f.name for f in fields(Rollup)]
    for rollup in rollups:
        for name in names:
            setattr(total, name, getattr(total, name) + getattr(rollup, name))
    return total


@_parser("stat")
def parse_stat(data: bytes) -> Stat:
    """Parse /proc/PID/stat.

    comm is in parentheses and may itself contain spaces and ')', so it is cut at the
    *last* ')' (as psutil does).
    """
    lparen = data.index(b"(")
    rparen = data.rindex(b")")
    pid = int(data[:lparen])
    comm = data[lparen + 1 : rparen].decode("utf-8", "replace")
    rest = data[rparen + 2 :].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    exit_code = int(rest[49]) if len(rest) > 49 else None
    state = rest[0].decode("ascii")
    if len(state) != 1:
        raise ValueError(f"state {state!r} is not one letter")
    return Stat(
        pid=pid,
        comm=comm,
        state=state,
        ppid=int(rest[1]),
        minflt=int(rest[7]),
        utime_ticks=int(rest[11]),
        stime_ticks=int(rest[12]),
        num_threads=int(rest[17]),
        start_ticks=int(rest[19]),
        rss_pages=int(rest[21]),
        exit_code=exit_code,
        flags=int(rest[6]),
    )


@_parser("statm")
def parse_statm(data: bytes, page_size: int = PAGE_SIZE) -> Statm:
    size, resident, shared, text, _lib, data_pages = data.split()[:6]
    return Statm(
        size=int(size) * page_size,
        resident=int(resident) * page_size,
        shared=int(shared) * page_size,
        text=int(text) * page_size,
        data=int(data_pages) * page_size,
    )


@_parser("status")
def parse_status(data: bytes) -> Status:
    """Parse /proc/PID/status. Kernel threads and zombies lack the Vm*/Rss* lines (0 here)."""
    values: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        key, sep, rest = line.partition(b":")
        if sep:
            values[key] = rest.strip()

    def kib(key: bytes) -> int:
        raw = values.get(key)
        return int(raw.split()[0]) * 1024 if raw else 0

    return Status(
        name=values.get(b"Name", b"").decode("utf-8", "replace"),
        state=values.get(b"State", b"?").decode("ascii")[:1],
        ppid=int(values.get(b"PPid", b"0")),
        uid=int(values.get(b"Uid", b"0").split()[0]),
        threads=int(values.get(b"Threads", b"1")),
        vm_rss=kib(b"VmRSS"),
        rss_anon=kib(b"RssAnon"),
        rss_file=kib(b"RssFile"),
        rss_shmem=kib(b"RssShmem"),
        vm_swap=kib(b"VmSwap"),
    )
