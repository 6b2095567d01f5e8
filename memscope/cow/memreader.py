"""Reading another process's memory through /proc/PID/mem.

`MemReader(pid, procfs)` opens /proc/PID/mem once and offers:

- `read_pages(addrs)`: many 4 KiB pages into one numpy buffer, coalescing runs of
  consecutive addresses into single `os.preadv` calls;
- `read(addr, size)` / `read_u64(addr)` / `read_cstring(addr)`: small reads for metadata
  (type objects, names), served from a per-reader page cache.

Reading needs ptrace read rights on the target (an ancestor, same uid with Yama 0, or
CAP_SYS_PTRACE). Opening or reading errors go through the procfs boundary: a vanished process
raises `ProcessGone`, missing rights `AccessDenied`. An address the target has not mapped
(EIO from the kernel) is not an error of the process: `read_pages` reports it in its `valid`
mask and `read` raises `Unmapped`.
"""

from __future__ import annotations

import errno
import os
from types import TracebackType

import numpy as np
import numpy.typing as npt

from memscope.procfs import MapEntry, ProcessGone, ProcFS, boundary

__all__ = ["PAGE", "USER_END", "MemReader", "Unmapped"]

PAGE = 4096
USER_END = 1 << 56  # above any user-space address (x86-64 5-level paging: 2**56)
_PAGE_MASK = ~(PAGE - 1)


class Unmapped(LookupError):
    """The target has nothing mapped (or nothing readable) at this address."""

    def __init__(self, addr: int) -> None:
        super().__init__(f"address {addr:#x} is not readable in the target")
        self.addr = addr


class MemReader:
    """Reads the memory of one process. Use as a context manager, or call close()."""

    def __init__(self, pid: int, procfs: ProcFS | None = None) -> None:
        self.pid = pid
        self.procfs = procfs if procfs is not None else ProcFS()
        with boundary(pid, "mem"):
            self._fd = os.open(self.procfs.path(pid, "mem"), os.O_RDONLY | os.O_CLOEXEC)
        self._cache: dict[int, bytes | None] = {}
        self._maps: list[MapEntry] | None = None
        self.bytes_read = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> MemReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def maps(self) -> list[MapEntry]:
        """The target's mappings, read once per reader."""
        if self._maps is None:
            self._maps = self.procfs.maps(self.pid)
        return self._maps

    # -- bulk ---------------------------------------------------------------------------

    def read_pages(
        self, addrs: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
        """Read the 4 KiB pages at `addrs` (page aligned, any order).

        Returns `(data, valid)`: data shaped (n, 4096) in the order of `addrs`, and a mask of
        the pages that could be read (unreadable ones are zero-filled).
        """
        addrs = np.asarray(addrs, dtype=np.uint64)
        n = len(addrs)
        data = np.zeros((n, PAGE), dtype=np.uint8)
        valid = np.zeros(n, dtype=np.bool_)
        if n == 0:
            return data, valid
        # Runs of consecutive addresses (in the given order) become one preadv each.
        breaks = np.flatnonzero(np.diff(addrs.astype(np.int64)) != PAGE) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [n]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            self._read_run(int(addrs[s]), data, valid, s, e)
        return data, valid

    def _read_run(
        self, addr: int, data: npt.NDArray[np.uint8], valid: npt.NDArray[np.bool_], s: int, e: int
    ) -> None:
        while s < e:
            got = self._pread_into(data[s:e].reshape(-1).data.cast("B"), addr)
            full = got // PAGE
            valid[s : s + full] = True
            s += full
            addr += full * PAGE
            if s < e:
                # The page at `addr` could not be read whole (EIO, short read): skip it.
                data[s] = 0
                s += 1
                addr += PAGE

    def _pread_into(self, buf: memoryview, addr: int) -> int:
        """preadv that returns the bytes read; 0 when the first page is unmapped."""
        total = 0
        if not 0 < addr < USER_END - len(buf):
            return 0
        while total < len(buf):
            with boundary(self.pid, "mem"):
                try:
                    got = os.preadv(self._fd, [buf[total:]], addr + total)
                except OSError as exc:
                    if exc.errno != errno.EIO:  # EIO: nothing mapped there
                        raise
                    got = 0
            if got <= 0:
                if total == 0 and not self.procfs.exists(self.pid):
                    raise ProcessGone(self.pid, f"process {self.pid} no longer exists")
                break
            total += got
            self.bytes_read += got
        return total

    # -- small reads --------------------------------------------------------------------

    def _page(self, page: int) -> bytes | None:
        if page in self._cache:
            return self._cache[page]
        buf = bytearray(PAGE)
        got = self._pread_into(memoryview(buf), page)
        result = bytes(buf) if got == PAGE else None
        self._cache[page] = result
        return result

    def prime(self, addrs: npt.NDArray[np.uint64], data: npt.NDArray[np.uint8]) -> None:
        """Seed the small-read cache with pages the caller already holds (same snapshot)."""
        for i, a in enumerate(addrs.tolist()):
            self._cache.setdefault(int(a), data[i].tobytes())

    def read(self, addr: int, size: int) -> bytes:
        """`size` bytes at `addr`; raises Unmapped if any page of them is unreadable."""
        if addr <= 0:
            raise Unmapped(addr)
        out = bytearray()
        pos = addr
        end = addr + size
        while pos < end:
            page = pos & _PAGE_MASK
            content = self._page(page)
            if content is None:
                raise Unmapped(pos)
            take = min(end, page + PAGE) - pos
            out += content[pos - page : pos - page + take]
            pos += take
        return bytes(out)

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def read_cstring(self, addr: int, limit: int = 512) -> bytes:
        """NUL-terminated string at `addr` (at most `limit` bytes, without the NUL)."""
        out = bytearray()
        pos = addr
        while len(out) < limit:
            page = pos & _PAGE_MASK
            content = self._page(page)
            if content is None:
                raise Unmapped(pos)
            chunk = content[pos - page :]
            nul = chunk.find(b"\0")
            if nul >= 0:
                out += chunk[:nul]
                return bytes(out[:limit])
            out += chunk
            pos = page + PAGE
        return bytes(out[:limit])
