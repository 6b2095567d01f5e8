"""Shared data model of the COW forensics (page classes, heap map, scan result).

The heap parser (memscope.cow.heap*) produces a HeapMap; the scanner (pagemap, classify,
causes) consumes it. Arrays are numpy so attribution stays vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

#: Why a scan classified pages by the exclusive bit instead of comparing PFNs.
REASON_FORCED = "chosen with --mode"
REASON_HIDDEN = ("the kernel hides page frame numbers from memscope (comparing them needs"
                 " CAP_SYS_ADMIN, e.g. root)")
REASON_EMPTY = "no resident pages to compare"
#: `CowScan.target` of a quick scan: page classes only, no objects or causes.
QUICK_TARGET = "page classes only (quick scan)"

__all__ = ["CowScan", "HeapMap", "PageClass", "SiteBytes", "TypeBytes"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]


class PageClass(IntEnum):
    """Class of one page of a child's private writable mapping, relative to its parent."""

    NOT_PRESENT = 0
    SHARED = 1  # present, not exclusive: still shared with the parent
    COPIED = 2  # COW broken: exclusive here, parent has a (different) page at that address
    NEW_PRIVATE = 3  # exclusive here, parent has no page at that address
    SWAPPED = 4


@dataclass
class HeapMap:
    """Python objects found in a set of pages of one process.

    One row per object (or per malloc'd buffer). `start` is the address of the PyObject
    (ob_refcnt), `block_start`/`block_size` the allocator block holding it, including any GC
    head and 3.11+ pre-header words. `type_index` indexes `type_names`; buffers owned by an
    object carry the owner's type index and `is_buffer`.
    """

    start: U64
    block_start: U64
    block_size: I64
    type_index: I64
    gc_tracked: BOOL
    is_buffer: BOOL
    type_names: list[str]
    # Address ranges of allocator metadata, as [start, end) pairs: pymalloc pool headers,
    # the link word of free pymalloc blocks, malloc chunk size words.
    allocator_ranges: U64 = field(default_factory=lambda: np.zeros((0, 2), dtype=np.uint64))
    # Bases of the validated pymalloc pools that overlap the pages, and the pool size of the
    # target (4096 before 3.10, 16384 after; 0 when unknown).
    pools: U64 = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    pool_size: int = 0
    # Pointers of typed owners (list items, dict tables, buffers...) that land in no block
    # of this map, with the owner's type index: a scan parsing its pages in slices gives
    # them to the untyped blocks of its other slices.
    owner_ptrs: U64 = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    owner_types: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass(frozen=True)
class TypeBytes:
    type: str
    bytes: int
    objects: int


@dataclass(frozen=True)
class SiteBytes:
    """Copied bytes held by objects allocated at one site (memscope.cow.sites)."""

    site: str  # "file:line" of the most recent frame, or "<untraced>"
    bytes: int
    objects: int
    traceback: tuple[tuple[str, int], ...] = field(default=())  # most recent first
    ci_bytes: int = 0  # 95% interval half-width of `bytes` when estimated from a sample


@dataclass
class CowScan:
    """Result of one COW scan of one process against its parent."""

    pid: int
    parent_pid: int
    scanned_at: float
    mode: str  # "pfn" (PFNs compared, root) or "exclusive-bit" (no CAP_SYS_ADMIN)
    inherited_bytes: int
    copied_bytes: int
    shared_bytes: int
    new_private_bytes: int
    swapped_bytes: int
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> class -> bytes
    by_type: list[TypeBytes] = field(default_factory=list)
    by_cause: dict[str, int] = field(default_factory=dict)
    by_type_cause: dict[str, dict[str, int]] = field(default_factory=dict)
    target: str = ""  # e.g. "CPython 3.11.7" or why object attribution was not possible
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds (not stored)
    mode_reason: str = ""  # why this mode was used (not stored; see scan._classify_pages)
    copying: bool = False  # the worker was still copying fast when the scan started
    #: addresses of the copied pages (quick scans; not stored): the COW scheduler keeps a
    #: sample of them for the sites capture (CowScheduler keep_pages)
    copied_pages: npt.NDArray[np.uint64] | None = field(default=None, repr=False, compare=False)
