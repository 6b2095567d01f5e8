"""Reading and decoding /proc/PID/pagemap and page contents with numpy.

One pagemap entry is a u64 per virtual page: bit 63 present, 62 swapped, 61 file page or
shared anonymous, 56 exclusively mapped (visible without privilege), 0-54 the PFN (reads as 0
without CAP_SYS_ADMIN). Reads are one `preadv` per mapping (or per run of consecutive pages
for /proc/PID/mem) straight into numpy buffers; decoding is vectorised, never a per-page loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from memscope.procfs import MapEntry, ProcessGone, ProcFile, ProcFS

__all__ = [
    "PAGE_SIZE",
    "PageTable",
    "decode_pagemap",
    "iter_pages",
    "page_addresses",
    "private_writable",
    "read_pagemap",
    "read_pages",
    "runs",
]

PAGE_SIZE = 4096
PAGE_SHIFT = 12
_PRESENT = np.uint64(1 << 63)
_SWAPPED = np.uint64(1 << 62)
_FILE = np.uint64(1 << 61)
_EXCLUSIVE = np.uint64(1 << 56)
_PFN_MASK = np.uint64((1 << 55) - 1)

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
U8 = npt.NDArray[np.uint8]

# Kernel-provided mappings that are never inherited copy-on-write data.
_SPECIAL = ("[vvar]", "[vdso]", "[vsyscall]", "[vvar_vclock]", "[uprobes]")


def maps_of_live(procfs: ProcFS, pid: int) -> list[MapEntry]:
    """The mappings of `pid`; ProcessGone when it has none. A process always maps its
    executable while it runs: no mapping means it is exiting (a zombie) and its memory is
    already released, and a scan then would record 0 bytes copied over its real last scan."""
    maps = procfs.maps(pid)
    if not maps:
        raise ProcessGone(pid, f"process {pid} is exiting: its memory is released")
    return maps


def private_writable(maps: Sequence[MapEntry]) -> list[MapEntry]:
    """Mappings whose pages can be copied on write: private and writable (anon and file)."""
    return [m for m in maps if m.writable and m.private and m.path not in _SPECIAL]


@dataclass
class PageTable:
    """Decoded pagemap entries of a set of pages (one row per page)."""

    addrs: U64
    present: BOOL
    swapped: BOOL
    file: BOOL
    exclusive: BOOL
    pfn: U64

    def __len__(self) -> int:
        return len(self.addrs)


def decode_pagemap(addrs: U64, entries: U64) -> PageTable:
    """Split raw pagemap entries into their flags (vectorised)."""
    return PageTable(
        addrs=addrs,
        present=(entries & _PRESENT) != 0,
        swapped=(entries & _SWAPPED) != 0,
        file=(entries & _FILE) != 0,
        exclusive=(entries & _EXCLUSIVE) != 0,
        pfn=entries & _PFN_MASK,
    )


def page_addresses(regions: Sequence[MapEntry]) -> tuple[U64, I64]:
    """Addresses of every page of `regions`, and for each page the index of its region."""
    if not regions:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    counts = np.array([(r.end - r.start) >> PAGE_SHIFT for r in regions], dtype=np.int64)
    starts = np.array([r.start for r in regions], dtype=np.uint64)
    region_index = np.repeat(np.arange(len(regions), dtype=np.int64), counts)
    first = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first, counts)
    addrs = starts[region_index] + (within.astype(np.uint64) << np.uint64(PAGE_SHIFT))
    return addrs, region_index


def read_pagemap(procfs: ProcFS, pid: int, regions: Sequence[MapEntry]) -> U64:
    """Raw pagemap entries of every page of `regions` of `pid` (zeros where unmapped).

    Raises ProcessGone if the process released its memory while we read.
    """
    total = sum((r.end - r.start) >> PAGE_SHIFT for r in regions)
    out = np.zeros(total, dtype=np.uint64)
    view = out.data.cast("B")
    pos = 0
    with procfs.open_file(pid, "pagemap") as f:
        for r in regions:
            n = ((r.end - r.start) >> PAGE_SHIFT) * 8
            got = f.readinto(view[pos : pos + n], (r.start >> PAGE_SHIFT) * 8)
            if got < n and not _alive(procfs, pid):
                raise ProcessGone(pid, f"process {pid} exited while reading pagemap")
            pos += n
    return out


def runs(addrs: U64) -> tuple[I64, I64]:
    """Runs of consecutive pages in sorted `addrs`: (index of first page, page count) per run."""
    if len(addrs) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    breaks = np.flatnonzero(np.diff(addrs) != PAGE_SIZE) + 1
    first = np.concatenate(([0], breaks)).astype(np.int64)
    counts = np.diff(np.concatenate((first, [len(addrs)]))).astype(np.int64)
    return first, counts


def read_pages(
    procfs: ProcFS, pid: int, addrs: U64, out: U8 | None = None
) -> tuple[U8, BOOL]:
    """Contents of the pages at sorted `addrs` from /proc/PID/mem, as an (n, 4096) array
    (`out`, an (n, 4096) buffer reused from call to call, or a new one).

    Returns the pages and a mask of the pages actually read (False where the address was
    unmapped by the time we read it: those pages are zeros). Needs ptrace read access
    (AccessDenied otherwise).
    """
    n = len(addrs)
    if out is not None and out.shape != (n, PAGE_SIZE):
        raise ValueError(f"read_pages: buffer of shape {out.shape} for {n} pages")
    pages = np.zeros((n, PAGE_SIZE), dtype=np.uint8) if out is None else out
    ok = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return pages, ok
    with procfs.open_file(pid, "mem") as f:
        _read_into(f, addrs, pages, ok)
    if out is not None and not ok.all():
        pages[~ok] = 0
    if not ok.any() and not _alive(procfs, pid):
        raise ProcessGone(pid, f"process {pid} exited while reading its memory")
    return pages, ok


def iter_pages(
    procfs: ProcFS, pid: int, addrs: U64, chunk: int = 256
) -> Iterator[tuple[int, U8, BOOL]]:
    """`read_pages` in slices of `chunk` pages: (first index, pages, ok) per slice.

    The slices share one buffer (valid until the next step), so a caller that only compares
    pages needs neither a full-size array nor its page faults, and finds each slice in cache.
    """
    buf = np.empty((min(chunk, len(addrs)), PAGE_SIZE), dtype=np.uint8)
    any_ok = False
    with procfs.open_file(pid, "mem") as f:
        for lo in range(0, len(addrs), chunk):
            part = addrs[lo : lo + chunk]
            pages, ok = buf[: len(part)], np.zeros(len(part), dtype=np.bool_)
            _read_into(f, part, pages, ok)
            pages[~ok] = 0
            any_ok = any_ok or bool(ok.any())
            yield lo, pages, ok
    if len(addrs) and not any_ok and not _alive(procfs, pid):
        raise ProcessGone(pid, f"process {pid} exited while reading its memory")


def _read_into(f: ProcFile, addrs: U64, pages: U8, ok: BOOL) -> None:
    """Read the sorted `addrs` into `pages`, one read per run; mark what was read in `ok`."""
    view = pages.reshape(-1).data
    first, counts = runs(addrs)
    for i, c in zip(first.tolist(), counts.tolist(), strict=True):
        lo = i * PAGE_SIZE
        got = f.readinto(view[lo : lo + c * PAGE_SIZE], int(addrs[i]))
        full = got // PAGE_SIZE
        ok[i : i + full] = True
        if full < c:  # a hole: read the rest page by page to skip only what is unmapped
            for j in range(i + full, i + c):
                lo = j * PAGE_SIZE
                ok[j] = f.readinto(view[lo : lo + PAGE_SIZE], int(addrs[j])) == PAGE_SIZE


def _alive(procfs: ProcFS, pid: int) -> bool:
    """True while `pid` still has its memory (exists and is not a zombie)."""
    try:
        return procfs.stat(pid).state not in ("Z", "X", "x")
    except ProcessGone:
        return False
