"""Reading /proc: the one place where OS errors become ProcessGone / AccessDenied.

`ProcFS(root)` reads from any directory laid out like /proc, so tests can point it at
captured files.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from memscope.procfs._errors import ProcfsError
from memscope.procfs._parsers import (
    MapEntry,
    Mapping,
    Rollup,
    Stat,
    Statm,
    Status,
    parse_maps,
    parse_smaps,
    parse_smaps_rollup,
    parse_stat,
    parse_statm,
    parse_status,
    sum_rollups,
)

__all__ = [
    "AccessDenied",
    "ProcFS",
    "ProcFile",
    "ProcessGone",
    "ProcessHandle",
    "ProcfsError",
    "boundary",
]

_GONE = {errno.ENOENT, errno.ESRCH}
_DENIED = {errno.EACCES, errno.EPERM}


class ProcessGone(ProcfsError):
    """The process exited (or never existed) while we were reading it."""


class AccessDenied(ProcfsError):
    """The kernel refused to show us this process's file."""


@contextmanager
def boundary(pid: int, what: str) -> Iterator[None]:
    """Translate OS errors of reading `what` of process `pid`: the one place it is done."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _GONE:
            raise ProcessGone(pid, f"process {pid} no longer exists") from None
        if exc.errno in _DENIED:
            raise AccessDenied(pid, f"permission denied reading {what} of process {pid}") from None
        if exc.errno == errno.EINVAL or exc.errno == errno.EIO:
            # Reading /proc/PID/* of a process that is exiting can fail this way.
            raise ProcessGone(pid, f"process {pid} exited while reading {what}") from None
        raise


def _split_cmdline(raw: bytes) -> list[str]:
    return [part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0") if part]


def _read_fd(fd: int) -> bytes:
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


class ProcFile:
    """An open /proc/PID/NAME file read at offsets (pagemap, mem); errors mapped as in ProcFS.

    `readinto` returns the bytes read; 0 means end of data: the address is unmapped
    (EIO from /proc/PID/mem) or the process released its memory (it exited).
    """

    def __init__(self, pid: int, name: str, fd: int) -> None:
        self.pid = pid
        self.name = name
        self._fd = fd

    def readinto(self, buf: memoryview, offset: int) -> int:
        done = 0
        with boundary(self.pid, self.name):
            while done < len(buf):
                try:
                    n = os.preadv(self._fd, [buf[done:]], offset + done)
                except OSError as exc:
                    if exc.errno == errno.EIO:
                        return done
                    raise
                if n <= 0:
                    break
                done += n
        return done

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ProcFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProcFS:
    """Typed access to /proc/PID/* files under a configurable root."""

    def __init__(self, root: str = "/proc") -> None:
        self.root = root
        self._has_rollup: bool | None = None

    def path(self, pid: int, name: str) -> str:
        return f"{self.root}/{pid}/{name}"

    def read(self, pid: int, name: str) -> bytes:
        """Read a whole /proc/PID/NAME file, translating errors at this one boundary."""
        with boundary(pid, name):
            return _read_fd(os.open(self.path(pid, name), os.O_RDONLY | os.O_CLOEXEC))

    def open(self, pid: int) -> ProcessHandle:
        return ProcessHandle(self, pid)

    def open_file(self, pid: int, name: str) -> ProcFile:
        """Open /proc/PID/NAME for reads at offsets (pagemap, mem); use as a context manager."""
        with boundary(pid, name):
            fd = os.open(self.path(pid, name), os.O_RDONLY | os.O_CLOEXEC)
        return ProcFile(pid, name, fd)

    def pids(self) -> list[int]:
        return [int(name) for name in os.listdir(self.root) if name.isdigit()]

    def exists(self, pid: int) -> bool:
        return os.path.exists(f"{self.root}/{pid}")

    def stat(self, pid: int) -> Stat:
        data = self.read(pid, "stat")
        if not data:
            raise ProcessGone(pid, f"process {pid} no longer exists")
        return parse_stat(data)

    def statm(self, pid: int) -> Statm:
        return parse_statm(self.read(pid, "statm"))

    def status(self, pid: int) -> Status:
        return parse_status(self.read(pid, "status"))

    def maps(self, pid: int) -> list[MapEntry]:
        return parse_maps(self.read(pid, "maps"))

    def smaps(self, pid: int) -> list[Mapping]:
        return parse_smaps(self.read(pid, "smaps"))

    def has_rollup(self, pid: int) -> bool:
        """Whether this kernel has smaps_rollup (Linux 4.14+); decided once."""
        if self._has_rollup is None:
            self._has_rollup = os.path.exists(self.path(pid, "smaps_rollup")) or not os.path.exists(
                self.path(pid, "smaps")
            )
        return self._has_rollup

    def rollup(self, pid: int) -> Rollup:
        """Process memory totals: smaps_rollup, or the sum of smaps before Linux 4.14."""
        if self.has_rollup(pid):
            return parse_smaps_rollup(self.read(pid, "smaps_rollup"))
        return sum_rollups([m.memory for m in self.smaps(pid)])

    def cmdline(self, pid: int) -> list[str]:
        return _split_cmdline(self.read(pid, "cmdline"))

    def exe(self, pid: int) -> str | None:
        """Target of /proc/PID/exe, or None when unreadable: kernel threads, other users'
        processes, zombies, and processes that exit while we look."""
        try:
            with boundary(pid, "exe"):
                return os.readlink(self.path(pid, "exe"))
        except ProcfsError:
            return None


class ProcessHandle:
    """Reads of one process through an fd on its /proc/PID directory.

    The directory fd stays bound to the process it was opened for: once that process is
    gone, reads fail (ProcessGone) even if its PID was reused, so samples are never mixed up.
    It also saves the path lookup on every tick.
    """

    def __init__(self, procfs: ProcFS, pid: int) -> None:
        self.procfs = procfs
        self.pid = pid
        with boundary(pid, "directory"):
            self._dirfd: int | None = os.open(
                f"{procfs.root}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )

    def read(self, name: str) -> bytes:
        if self._dirfd is None:
            raise ProcessGone(self.pid, f"process {self.pid} handle is closed")
        with boundary(self.pid, name):
            return _read_fd(os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dirfd))

    def _memory(self, name: str) -> bytes:
        """A memory file (statm, smaps_rollup, smaps). When the main thread has exited
        (pthread_exit) while others run, the leader's files are empty or ESRCH: read them
        through a live thread, which shares the memory."""
        try:
            data = self.read(name)
        except ProcessGone:
            alt = self._thread_read(name)
            if alt is None:
                raise
            return alt
        if data and not data.startswith(b"0 0 0 "):
            return data
        return self._thread_read(name) or data

    def _thread_read(self, name: str) -> bytes | None:
        try:
            with boundary(self.pid, "task"):
                fd = os.open("task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                             dir_fd=self._dirfd)
                try:
                    tids = [t for t in os.listdir(fd) if t != str(self.pid)]
                finally:
                    os.close(fd)
            for tid in tids:
                try:
                    data = self.read(f"task/{tid}/{name}")
                except ProcessGone:
                    continue
                if data and not data.startswith(b"0 0 0 "):
                    return data
        except ProcfsError:
            pass
        return None

    def statm(self) -> Statm:
        return parse_statm(self._memory("statm"))

    def stat(self) -> Stat:
        return parse_stat(self.read("stat"))

    def rollup(self) -> Rollup:
        if self.procfs.has_rollup(self.pid):
            return parse_smaps_rollup(self._memory("smaps_rollup"))
        return sum_rollups([m.memory for m in parse_smaps(self._memory("smaps"))])

    def cmdline(self) -> list[str]:
        return _split_cmdline(self.read("cmdline"))

    def close(self) -> None:
        if self._dirfd is not None:
            os.close(self._dirfd)
            self._dirfd = None
