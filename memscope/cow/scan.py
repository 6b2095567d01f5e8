"""One COW scan of a forked child against its parent: pages -> objects -> causes.

`scan_process` reads both pagemaps over the child's private writable mappings, classifies
every page, reads the copied pages of the child and the parent's current pages at the same
addresses, parses the CPython heap in the child's copied pages (when the target is a
supported CPython) and attributes the copied bytes to types and causes.

Degradations are explicit in the result: `mode` says how pages were classified, `target`
says why objects were not attributed (unsupported interpreter, no ptrace access).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from memscope._malloc import trim
from memscope.cow._model import (
    QUICK_TARGET,
    REASON_EMPTY,
    REASON_FORCED,
    REASON_HIDDEN,
    CowScan,
    HeapMap,
    PageClass,
)
from memscope.cow.causes import CauseResult, PageDiff, attribute_diff
from memscope.cow.classify import (
    bytes_by_kind,
    class_counts,
    classify,
    detect_mode,
    mapping_kind,
    probe_pymalloc,
)
from memscope.cow.cpython import Target, detect_target
from memscope.cow.heap import parse_heap
from memscope.cow.heap_index import HeapIndex, heap_index_for
from memscope.cow.memreader import MemReader
from memscope.cow.pagemap import (
    BOOL,
    I64,
    PAGE_SIZE,
    U8,
    U64,
    decode_pagemap,
    iter_pages,
    maps_of_live,
    page_addresses,
    private_writable,
    read_pagemap,
    read_pages,
)
from memscope.cow.scan_slices import Totals, slices
from memscope.errors import UsageError
from memscope.procfs import AccessDenied, MapEntry, ProcFS

__all__ = ["QUICK_TARGET", "quick_scan", "scan_process"]


def quick_scan(
    pid: int, parent_pid: int, procfs: ProcFS | None = None, *,
    clock: Callable[[], float] = time.time,
) -> CowScan:
    """Copied/shared/new-private bytes of `pid` against `parent_pid` from the two pagemaps
    alone (no page contents, no heap): a few milliseconds where a full scan takes 100 ms or
    more, so every worker can get one the moment its copying settles."""
    procfs = procfs if procfs is not None else ProcFS()
    t0 = time.perf_counter()
    regions = private_writable(maps_of_live(procfs, pid))
    scanned_at = clock()
    pages_of = _classify_pages(procfs, pid, parent_pid, regions, None)
    counts = pages_of.counts.sum(axis=0) * PAGE_SIZE
    return CowScan(
        pid=pid,
        parent_pid=parent_pid,
        scanned_at=scanned_at,
        mode=pages_of.mode,
        inherited_bytes=int(counts[PageClass.SHARED] + counts[PageClass.COPIED]),
        copied_bytes=int(counts[PageClass.COPIED]),
        shared_bytes=int(counts[PageClass.SHARED]),
        new_private_bytes=int(counts[PageClass.NEW_PRIVATE]),
        swapped_bytes=int(counts[PageClass.SWAPPED]),
        target=QUICK_TARGET,
        duration_s=time.perf_counter() - t0,
        copied_pages=pages_of.copied,
    )


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
    try:
        return _scan(pid, parent_pid, procfs if procfs is not None else ProcFS(), clock, mode,
                     objects)
    finally:
        trim()  # the scan's freed arrays leave the allocator's arenas (memscope/_malloc.py)


def _scan(
    pid: int, parent_pid: int, procfs: ProcFS, clock: Callable[[], float], mode: str | None,
    objects: bool,
) -> CowScan:
    timer = _Timer()
    regions = private_writable(maps_of_live(procfs, pid))
    scanned_at = clock()
    pages_of = _classify_pages(procfs, pid, parent_pid, regions, mode)
    used_mode, copied = pages_of.mode, pages_of.copied
    counts = pages_of.counts.sum(axis=0) * PAGE_SIZE
    timer.lap("pagemap")

    target_text, why, pool_size = "", "", 0
    pymalloc = np.zeros(len(regions), dtype=np.bool_)
    single: CauseResult | None = None
    try:
        target = _target(pid, procfs, regions)
        totals = Totals(copied, bytearray_bytes=target.minor >= (3, 15))
        target_text = target.describe()
        parse = objects and target.supported
        pool_size = (16384 if target.minor >= (3, 10) else 4096) if parse else 0
        timer.lap("heap")
        parts = slices(copied)
        # One page buffer for every slice (bounded memory, no fresh page faults per slice),
        # one reader of the worker and one index of the parent's heap for the whole scan.
        buffer = np.empty((max((hi - lo for lo, hi in parts), default=0), PAGE_SIZE),
                          dtype=np.uint8)
        index, no_index = _heap_index(parent_pid, procfs) if parse else (None, "")
        why = no_index
        parse = parse and not no_index
        with MemReader(pid, procfs) if parse and parts else contextlib.nullcontext() as reader:
            for lo, hi in parts:  # one slice of pages and heap rows at a time
                addrs = copied[lo:hi]
                pages, ok = read_pages(procfs, pid, addrs, out=buffer[: hi - lo])
                timer.lap("read_child")
                diff = _compare_parent(procfs, parent_pid, addrs, pages, ok)
                timer.lap("read_parent")
                heap = None
                if reader is not None:
                    # Boolean indexing copies: skip it when every page was read (usually).
                    all_ok = bool(ok.all())
                    heap, failed = _parse(target, reader, addrs if all_ok else addrs[ok],
                                          pages if all_ok else pages[ok], index)
                    why = why or failed
                    if heap is not None:
                        pymalloc |= _pymalloc_regions(regions, heap)
                del pages
                timer.lap("heap")
                result = attribute_diff(addrs, diff, ok, heap, pool_size if heap else 0)
                del diff
                if len(parts) == 1:
                    single = result
                else:
                    totals.add(result, addrs, heap)
                del heap
                timer.lap("attribute")
        if not objects:
            why = " (object attribution skipped)"
        target_text += why
    except AccessDenied as exc:
        none = np.zeros(0, dtype=np.int64)
        diff = PageDiff(np.zeros(len(copied), dtype=np.bool_), none, none)
        single = attribute_diff(copied, diff, diff.differ, None, 0)
        target_text = f"page-level only: {exc}"
    if single is not None:
        by_cause, by_type, by_type_cause = single.by_cause, single.by_type, single.by_type_cause
    else:
        by_cause, by_type, by_type_cause = totals.finish()
    timer.lap("attribute")

    kinds = _kinds(procfs, pid, regions, pymalloc)
    timer.lap("kinds")
    return CowScan(
        pid=pid,
        parent_pid=parent_pid,
        scanned_at=scanned_at,
        mode=used_mode,
        mode_reason=pages_of.reason,
        inherited_bytes=int(counts[PageClass.SHARED] + counts[PageClass.COPIED]),
        copied_bytes=int(counts[PageClass.COPIED]),
        shared_bytes=int(counts[PageClass.SHARED]),
        new_private_bytes=int(counts[PageClass.NEW_PRIVATE]),
        swapped_bytes=int(counts[PageClass.SWAPPED]),
        by_kind=bytes_by_kind(pages_of.counts, kinds),
        by_type=by_type,
        by_cause=by_cause,
        by_type_cause=by_type_cause,
        target=target_text,
        duration_s=timer.total(),
        timings=timer.laps,
    )


# Pagemaps are read and classified this many pages (4 GiB of address space) at a time, so
# a process with huge sparse writable mappings does not need arrays as large as its VA.
CHUNK_PAGES = 1 << 20


@dataclass
class _Pages:
    mode: str
    counts: I64  # pages per (region, PageClass)
    copied: U64  # addresses of the copied pages, sorted
    reason: str = ""




class PfnsHidden(UsageError):
    """--mode pfn without the privilege to read PFNs: every page would look shared."""


def _chunks(regions: Sequence[MapEntry], limit: int) -> Iterator[tuple[list[MapEntry], I64]]:
    """Groups of region pieces of at most `limit` pages, with each piece's region index."""
    group: list[MapEntry] = []
    owners: list[int] = []
    size = 0
    for i, r in enumerate(regions):
        start = r.start
        while start < r.end:
            take = min(r.end - start, (limit - size) * PAGE_SIZE)
            group.append(replace(r, start=start, end=start + take))
            owners.append(i)
            size += take // PAGE_SIZE
            start += take
            if size >= limit:
                yield group, np.array(owners, dtype=np.int64)
                group, owners, size = [], [], 0
    if group:
        yield group, np.array(owners, dtype=np.int64)


def _classify_pages(
    procfs: ProcFS, pid: int, parent_pid: int, regions: Sequence[MapEntry], mode: str | None
) -> _Pages:
    """Both pagemaps over `regions`, classified chunk by chunk (numpy within a chunk)."""
    counts = np.zeros((len(regions), len(PageClass)), dtype=np.int64)
    copied: list[U64] = []
    decided = False
    reason = REASON_FORCED if mode == "exclusive-bit" else ""
    for pieces, owner in _chunks(regions, CHUNK_PAGES):
        addrs, piece_index = page_addresses(pieces)
        child = decode_pagemap(addrs, read_pagemap(procfs, pid, pieces))
        parent = decode_pagemap(addrs, read_pagemap(procfs, parent_pid, pieces))
        if not decided and bool(child.present.any()):
            decided = True  # the first chunk with present pages decides
            detected = detect_mode(child)
            if mode == "pfn" and detected != "pfn":
                raise PfnsHidden(
                    f"--mode pfn: {REASON_HIDDEN}; every copied page would count as shared",
                    hint="run as root, or leave out --mode to classify by the exclusive bit",
                )
            if mode is None:
                mode = detected
                reason = REASON_HIDDEN if mode == "exclusive-bit" else ""
        classes = classify(child, parent, mode or "exclusive-bit")
        region_index = owner[piece_index]
        counts += class_counts(classes, region_index, len(regions))
        copied.append(addrs[classes == PageClass.COPIED])
    all_copied = np.concatenate(copied) if copied else np.zeros(0, dtype=np.uint64)
    if mode is None:
        reason = REASON_EMPTY
    return _Pages(mode or "exclusive-bit", counts, all_copied, reason)


def _compare_parent(
    procfs: ProcFS, parent_pid: int, addrs: U64, pages: U8, ok: BOOL
) -> PageDiff:
    """Read the parent's pages at `addrs` slice by slice and diff them with the child's
    `pages`; `ok` loses the pages the parent could not give."""
    parts: list[PageDiff] = []
    for lo, parent, parent_ok in iter_pages(procfs, parent_pid, addrs):
        hi = lo + len(parent_ok)
        ok[lo:hi] &= parent_ok
        parts.append(PageDiff.of(pages[lo:hi], parent, ok[lo:hi], first=lo))
    return PageDiff.concat(parts)


class _Timer:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        """Add the time since the last lap to phase `name` (phases recur per slice)."""
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start


# Interpreter detection parses the ELF image (~30 ms); forked workers share their parent's
# image at the same addresses, so the result is reused for every process mapping it there.
_TARGETS: dict[tuple[tuple[int, str], ...], Target] = {}


def _target(pid: int, procfs: ProcFS, regions: Sequence[MapEntry]) -> Target:
    key = tuple((r.start, r.path) for r in regions if "python" in r.path.rsplit("/", 1)[-1])
    cached = _TARGETS.get(key) if key else None
    if cached is not None:
        return replace(cached, pid=pid)
    target = detect_target(pid, procfs)
    if key:
        if len(_TARGETS) >= 64:
            _TARGETS.clear()
        _TARGETS[key] = target
    return target


def _heap_index(parent_pid: int, procfs: ProcFS) -> tuple[HeapIndex | None, str]:
    """The parent's `[heap]` index (heap_index_for), or None and why it failed."""
    try:
        return heap_index_for(parent_pid, procfs), ""
    except (ValueError, LookupError) as exc:
        return None, f" (objects not attributed: {exc})"


def _parse(
    target: Target, reader: MemReader, addrs: U64, pages: U8, index: HeapIndex | None
) -> tuple[HeapMap | None, str]:
    """The heap map, or None and why: a target changing under the parser can break a
    read or a layout check; its pages are still classified and given causes."""
    try:
        return parse_heap(target, reader, addrs, pages, index), ""
    except (ValueError, LookupError) as exc:
        return None, f" (objects not attributed: {exc})"


def _pymalloc_regions(regions: Sequence[MapEntry], heap: HeapMap) -> BOOL:
    """Anonymous regions in which the heap parser validated allocator metadata."""
    out = np.zeros(len(regions), dtype=np.bool_)
    if len(heap.allocator_ranges) and len(regions):
        heads = np.sort(heap.allocator_ranges[:, 0])
        starts = np.array([r.start for r in regions], dtype=np.uint64)
        ends = np.array([r.end for r in regions], dtype=np.uint64)
        anon = np.array([r.inode == 0 and not r.path for r in regions], dtype=np.bool_)
        out = (np.searchsorted(heads, ends) > np.searchsorted(heads, starts)) & anon
    return out


def _kinds(
    procfs: ProcFS, pid: int, regions: Sequence[MapEntry], parsed_pymalloc: BOOL
) -> list[str]:
    """Kind of each region; pymalloc when a pool header is found at its start or the heap
    parser validated a pool header inside it."""
    pymalloc = probe_pymalloc(procfs, pid, regions)
    pymalloc = [bool(p) or bool(q) for p, q in zip(pymalloc, parsed_pymalloc, strict=True)]
    return [mapping_kind(r, p) for r, p in zip(regions, pymalloc, strict=True)]
