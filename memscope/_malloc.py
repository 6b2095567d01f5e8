"""Keep memscope's own RSS from holding memory it has freed (glibc malloc), for long recordings.

A COW scan allocates page buffers of one to tens of MiB (numpy arrays of a worker's copied
pages and its parent's) and frees them when the scan is done. glibc serves such requests with
mmap and unmaps them on free, but its *dynamic* mmap threshold rises to the size of every
mmapped chunk freed (up to 32 MiB, mallopt(3)). After the first scan, buffers of that size come
from the heap instead, where a freed chunk below a live one cannot be trimmed: the memory stays
resident. Measured with bench/soak.py (16 recycled workers, default attach): memscope's RSS
settled at 112 MiB with glibc's defaults, 54 MiB with the threshold fixed (docs/performance.md).

Setting M_MMAP_THRESHOLD explicitly turns the dynamic adjustment off, so buffers of at least
MMAP_THRESHOLD always go back to the kernel when freed. It is fixed at 2 MiB, above a COW
scan's per-slice arrays (1 MiB slices, memscope/cow/scan_slices.py): those come from the
scan thread's arena and are reused slice after slice instead of being mapped, faulted in and
unmapped for each slice (that cost a 16 MiB scan 1.3x its CPU), and `trim()` at the end of
the scan gives their pages back. Fixing the mmap threshold also stops glibc from raising
the trim threshold with it (to twice the mmap threshold): left at 128 KiB, every free of a
slice's array at the top of the arena returned its pages, and the next slice faulted them in
again. It is fixed at 2 x MMAP_THRESHOLD, glibc's own pair. Small allocations (Python
objects, SQLite pages) are unaffected. Not glibc (musl, or another allocator preloaded):
mallopt is missing or a no-op, and nothing changes.
"""

from __future__ import annotations

import ctypes

__all__ = ["MMAP_THRESHOLD", "return_freed_buffers", "trim"]

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
#: Allocations of at least this many bytes are mmapped and unmapped on free (glibc's default
#: is 128 KiB, raised dynamically up to 32 MiB).
MMAP_THRESHOLD = 2 << 20


def return_freed_buffers(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at `threshold` bytes, and its trim threshold at twice that
    (the pair glibc's dynamic rule keeps, which fixing one turns off: the trim threshold
    would stay at 128 KiB, and every slice of a COW scan would give its arrays' pages back
    at the top of the arena and fault them in again for the next slice; `trim()` after the
    scan still returns them). True when the allocator took both."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2 * threshold)
    )


def trim() -> bool:
    """glibc malloc_trim(0): give back the free pages of every arena, including those between
    live chunks (which the threshold alone cannot). True when memory was released.

    Called at the end of every full COW scan (memscope.cow.scan): the scanning thread's arena
    keeps the scan's per-slice arrays' free pages resident otherwise (~2 MiB after a 16 MiB
    scan, up to 6 MiB of a 23 MiB arena seen in a soak); it costs ~0.4 ms."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    return bool(malloc_trim(0))
