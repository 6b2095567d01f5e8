"""COW to sites for live workers: parse the objects in a worker's copied pages and resolve their
allocation sites through the tracing origin's agent (see memscope.cow.sites)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from memscope.cow._model import HeapMap, PageClass
from memscope.cow.classify import classify, detect_mode
from memscope.cow.cpython import Target, detect_target
from memscope.cow.heap import parse_heap
from memscope.cow.heap_index import heap_index_for
from memscope.cow.memreader import MemReader
from memscope.cow.pagemap import (
    decode_pagemap,
    maps_of_live,
    page_addresses,
    private_writable,
    read_pagemap,
    read_pages,
)
from memscope.cow.site_estimate import sample_pages
from memscope.cow.sites import SiteBytes, heap_sites, sum_sites
from memscope.inject.errors import AgentError
from memscope.procfs import ProcFS

__all__ = ["WorkerSites", "copied_heap", "copied_page_sample", "copied_pages", "heap_in_pages",
           "parent_page_sample", "tree_sites"]


@dataclass(frozen=True)
class WorkerSites:
    pid: int
    copied_bytes: int  # bytes of copied pages
    sites: list[SiteBytes]  # bytes of the blocks overlapping those pages, by site
    error: str = ""


def copied_pages(
    pid: int, parent_pid: int, procfs: ProcFS | None = None, max_pages: int = 0
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """The pages `pid` has copied from `parent_pid`: (addresses, contents, read ok). The only
    step that needs the worker alive (pagemaps and page reads: milliseconds). `max_pages` >
    0: at most about that many of them (`copied_page_sample` says which and at what rate)."""
    copied, pages, ok, _ = copied_page_sample(pid, parent_pid, procfs, max_pages)
    return copied, pages, ok


def copied_page_sample(
    pid: int, parent_pid: int, procfs: ProcFS | None = None, max_pages: int = 0
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8], npt.NDArray[np.bool_], float]:
    """`copied_pages`, plus the rate each copied page was kept with (sample_pages: the same
    pages in every worker of a parent; 1.0 when all are kept)."""
    procfs = procfs if procfs is not None else ProcFS()
    regions = private_writable(maps_of_live(procfs, pid))
    addrs, _ = page_addresses(regions)
    child = decode_pagemap(addrs, read_pagemap(procfs, pid, regions))
    parent = decode_pagemap(addrs, read_pagemap(procfs, parent_pid, regions))
    copied = addrs[classify(child, parent, detect_mode(child)) == PageClass.COPIED]
    copied, rate = sample_pages(copied, max_pages)
    pages, ok = read_pages(procfs, pid, copied)
    return copied, pages, ok, rate


def parent_page_sample(
    parent_pid: int, sample: npt.NDArray[np.uint64], procfs: ProcFS | None = None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """The parent's copy of the pages a worker was found to have copied (`sample`, from an
    earlier scan of the worker): what `copied_page_sample` reads from a worker that has since
    exited. Every object on such a page was allocated at the same address before the fork;
    the worker's copy differs in what it wrote (reference counts, GC headers), not in where
    the blocks are or what type they hold."""
    procfs = procfs if procfs is not None else ProcFS()
    return read_pages(procfs, parent_pid, sample)


def heap_in_pages(
    parent_pid: int,
    copied: npt.NDArray[np.uint64],
    pages: npt.NDArray[np.uint8],
    ok: npt.NDArray[np.bool_],
    procfs: ProcFS | None = None,
    target: Target | None = None,
) -> HeapMap:
    """Objects in a worker's copied pages. The heap parser follows pointers (types, pool
    headers) through the *parent*, where every object of a copied page was allocated at the
    same address before the fork: the worker may be gone."""
    procfs = procfs if procfs is not None else ProcFS()
    target = target if target is not None else detect_target(parent_pid, procfs)
    with MemReader(parent_pid, procfs) as reader:
        index = heap_index_for(parent_pid, procfs)  # the parent's [heap], walked once
        return parse_heap(target, reader, copied[ok], pages[ok], index)


def copied_heap(
    pid: int, parent_pid: int, procfs: ProcFS | None = None, target: Target | None = None
) -> tuple[HeapMap, npt.NDArray[np.uint64]]:
    """Objects in the pages `pid` has copied from `parent_pid`, and those pages' addresses."""
    copied, pages, ok = copied_pages(pid, parent_pid, procfs)
    return heap_in_pages(parent_pid, copied, pages, ok, procfs, target), copied


def tree_sites(
    run_dir: str, workers: dict[int, int], procfs: ProcFS | None = None, top: int = 20
) -> tuple[list[WorkerSites], list[SiteBytes]]:
    """Sites of the copied memory of each worker ({pid: parent pid}) and summed over them.

    A worker whose scan or resolution fails gets an `error` and no sites; the others go on."""
    out: list[WorkerSites] = []
    for pid, ppid in sorted(workers.items()):
        try:
            heap, copied = copied_heap(pid, ppid, procfs)
            sites = heap_sites(run_dir, pid, heap, copied, top=10**9)
            out.append(WorkerSites(pid, len(copied) * 4096, sites))
        except (AgentError, OSError, ValueError) as exc:
            out.append(WorkerSites(pid, 0, [], str(exc)))
    total = sum_sites([w.sites for w in out], top)
    return [WorkerSites(w.pid, w.copied_bytes, w.sites[:top], w.error) for w in out], total


