"""One COW scan of a forked child against its parent: pages -> objects -> causes.

`scan_process` reads both pagemaps over the child's private writable mappings, classifies
every page, reads the copied pages of the child and the parent's current pages at the same
addresses, parses the CPython heap in the child's copied pages (when the target is a
supported CPython) and attributes the copied bytes to types and causes.

Degradations are explicit in the result: `mode` says how pages were classified, `target`
says why objects were not attributed (unsupported interpreter, no ptrace access).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from memscope.cow._model import CowScan, HeapMap, PageClass
from memscope.cow.causes import attribute
from memscope.cow.classify import (
    bytes_by_kind,
    classify,
    detect_mode,
    mapping_kind,
    probe_pymalloc,
)
from memscope.cow.cpython import Target, detect_target
from memscope.cow.heap import parse_heap
from memscope.cow.memreader import MemReader
from memscope.cow.pagemap import (
    PAGE_SIZE,
    U8,
    U64,
    decode_pagemap,
    page_addresses,
    private_writable,
    read_pagemap,
    read_pages,
)
from memscope.procfs import AccessDenied, MapEntry, ProcFS

__all__ = ["scan_process"]


def scan_process(
    pid: int,
    parent_pid: int,
    procfs: ProcFS | None = None,
    *,
    clock: Callable[[], float] = time.time,
    mode: str | None = None,
    objects: bool = True,
) -> CowScan:
    """Scan `pid` against `parent_pid` (both alive). Raises ProcessGone if either vanishes.

    `mode` forces "pfn" or "exclusive-bit" (default: "pfn" when PFNs are readable);
    `objects=False` skips heap parsing (page classes and causes only).
    """
    procfs = procfs if procfs is not None else ProcFS()
    t0 = time.perf_counter()
    regions = private_writable(procfs.maps(pid))
    addrs, region_index = page_addresses(regions)
    child = decode_pagemap(addrs, read_pagemap(procfs, pid, regions))
    parent = decode_pagemap(addrs, read_pagemap(procfs, parent_pid, regions))
    scanned_at = clock()
    used_mode = mode or detect_mode(child)
    classes = classify(child, parent, used_mode)
    counts = np.bincount(classes, minlength=len(PageClass)) * PAGE_SIZE
    copied = addrs[classes == PageClass.COPIED]

    target_text, heap, pool_size = "", None, 0
    try:
        pages, ok = read_pages(procfs, pid, copied)
        parent_pages, parent_ok = read_pages(procfs, parent_pid, copied)
        ok &= parent_ok
        target = detect_target(pid, procfs)
        target_text = target.describe()
        if objects and target.supported:
            heap = _parse(target, procfs, pid, copied[ok], pages[ok])
            pool_size = 16384 if target.minor >= (3, 10) else 4096
        elif not objects:
            target_text += " (object attribution skipped)"
    except AccessDenied as exc:
        pages = parent_pages = np.zeros((len(copied), PAGE_SIZE), dtype=np.uint8)
        ok = np.zeros(len(copied), dtype=np.bool_)
        target_text = f"page-level only: {exc}"
    result = attribute(copied, pages, parent_pages, ok, heap, pool_size)

    present = np.sort(addrs[child.present & ~child.swapped])
    kinds = _kinds(procfs, pid, regions, heap, present)
    return CowScan(
        pid=pid,
        parent_pid=parent_pid,
        scanned_at=scanned_at,
        mode=used_mode,
        inherited_bytes=int(counts[PageClass.SHARED] + counts[PageClass.COPIED]),
        copied_bytes=int(counts[PageClass.COPIED]),
        shared_bytes=int(counts[PageClass.SHARED]),
        new_private_bytes=int(counts[PageClass.NEW_PRIVATE]),
        swapped_bytes=int(counts[PageClass.SWAPPED]),
        by_kind=bytes_by_kind(classes, region_index, kinds),
        by_type=result.by_type,
        by_cause=result.by_cause,
        by_type_cause=result.by_type_cause,
        target=target_text,
        duration_s=time.perf_counter() - t0,
    )


def _parse(target: Target, procfs: ProcFS, pid: int, addrs: U64, pages: U8) -> HeapMap:
    with MemReader(pid, procfs) as reader:
        return parse_heap(target, reader, addrs, pages)


def _kinds(
    procfs: ProcFS, pid: int, regions: Sequence[MapEntry], heap: HeapMap | None, present: U64
) -> list[str]:
    """Kind of each region; pymalloc when a pool header is found at its start or the heap
    parser validated a pool header inside it."""
    pymalloc = probe_pymalloc(procfs, pid, regions, present)
    if heap is not None and len(heap.allocator_ranges):
        heads = np.sort(heap.allocator_ranges[:, 0])
        for i, r in enumerate(regions):
            lo, hi = np.searchsorted(heads, [r.start, r.end])
            if hi > lo and r.inode == 0 and not r.path:
                pymalloc[i] = True
    return [mapping_kind(r, p) for r, p in zip(regions, pymalloc, strict=True)]
