"""Reading /proc: the one place where OS errors become ProcessGone / AccessDenied.

`ProcFS(root)` reads from any directory laid out like /proc, so tests can point it at
captured files.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

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

__all__ = ["AccessDenied", "ProcFS", "ProcFile", "ProcessGone", "ProcfsError"]

_GONE = {errno.ENOENT, errno.ESRCH}
_DENIED = {errno.EACCES, errno.EPERM}


class ProcfsError(Exception):
    def __init__(self, pid: int, message: str) -> None:
        super().__init__(message)
        self.pid = pid


class ProcessGone(ProcfsError):
    """The process exited (or never existed) while we were reading it."""


class AccessDenied(ProcfsError):
    """The kernel refused to show us this process's file."""


@contextmanager
def _boundary(pid: int, what: str) -> Iterator[None]:
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
        with _boundary(self.pid, self.name):
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
        with _boundary(pid, name):
            fd = os.open(self.path(pid, name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                chunks = []
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            finally:
                os.close(fd)
        return b"".join(chunks)

    def open(self, pid: int, name: str) -> ProcFile:
        """Open /proc/PID/NAME for reads at offsets (use as a context manager)."""
        with _boundary(pid, name):
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

    def rollup(self, pid: int) -> Rollup:
        """Process memory totals: smaps_rollup, or the sum of smaps before Linux 4.14."""
        if self._has_rollup is None:
            self._has_rollup = os.path.exists(self.path(pid, "smaps_rollup")) or not os.path.exists(
                self.path(pid, "smaps")
            )
        if self._has_rollup:
            return parse_smaps_rollup(self.read(pid, "smaps_rollup"))
        return sum_rollups([m.memory for m in self.smaps(pid)])

    def cmdline(self, pid: int) -> list[str]:
        raw = self.read(pid, "cmdline")
        return [part.decode("utf-8", "replace") for part in raw.rstrip(b"\0").split(b"\0") if part]

    def exe(self, pid: int) -> str | None:
        """Target of /proc/PID/exe, or None when unreadable (kernel threads, other users)."""
        try:
            with _boundary(pid, "exe"):
                return os.readlink(self.path(pid, "exe"))
        except AccessDenied:
            return None
        except FileNotFoundError:
            return None
