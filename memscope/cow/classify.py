"""Page classes of a forked child against its parent, and the kind of each mapping.

Two modes, recorded per scan (docs/cow.md explains the difference):

- "pfn" (the PFNs are readable, i.e. CAP_SYS_ADMIN): a present child page is *shared* when
  the parent maps the same physical page at that address, *copied* when the parent maps a
  different one, *new private* when the parent has none and the page is exclusive.
- "exclusive-bit" (PFNs read as 0): a present page is *shared* when not exclusively mapped,
  *copied* when exclusive and the parent has a page at that address, else *new private*.

Mapping kinds are heuristics, stated where they are decided (see `mapping_kind`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from memscope.cow._model import PageClass
from memscope.cow.pagemap import I64, U8, PageTable
from memscope.procfs import MapEntry, ProcFS, ProcfsError

__all__ = [
    "CLASS_NAMES",
    "KINDS",
    "MODES",
    "bytes_by_kind",
    "class_counts",
    "classify",
    "detect_mode",
    "mapping_kind",
    "probe_pymalloc",
]

MODES = ("pfn", "exclusive-bit")
KINDS = ("pymalloc", "malloc-heap", "anon", "library-data", "stack")
CLASS_NAMES = {
    PageClass.SHARED: "shared",
    PageClass.COPIED: "copied",
    PageClass.NEW_PRIVATE: "new_private",
    PageClass.SWAPPED: "swapped",
}
PAGE_SIZE = 4096
# Pool sizes of pymalloc: 4 KiB on CPython 3.8/3.9, 16 KiB on 3.10+ (64-bit).
POOL_SIZES = (16384, 4096)
_POOL_HEADER = struct.Struct("<QQQQIIII")  # ref, freeblock, nextpool, prevpool, arenaindex,
#                                           szidx, nextoffset, maxnextoffset


def detect_mode(child: PageTable) -> str:
    """"pfn" when the kernel shows us PFNs (CAP_SYS_ADMIN), else "exclusive-bit"."""
    mapped = child.present & ~child.file
    if not mapped.any():
        mapped = child.present
    return "pfn" if bool(np.any(child.pfn[mapped] != 0)) else "exclusive-bit"


def classify(child: PageTable, parent: PageTable, mode: str) -> U8:
    """PageClass of every page of `child`, given the parent's pagemap at the same addresses."""
    if mode not in MODES:
        raise ValueError(f"unknown COW scan mode {mode!r}")
    present = child.present
    parent_has = parent.present | parent.swapped
    if mode == "pfn":
        same = present & parent.present & (child.pfn == parent.pfn)
        # A page-cache page (file, unwritten) is shared with the cache even if the parent
        # has since written its own copy: the child did not copy it.
        # ...and a copy is the worker's own: a page it shares (with a grandchild, or with
        # siblings when the parent wrote after the fork) is not in its USS, so not "copied".
        copied = present & child.exclusive & parent_has & ~same & ~child.file
        shared = present & ~copied & (same | ~child.exclusive | child.file)
        new_private = present & ~copied & ~shared
    else:
        shared = present & ~child.exclusive
        copied = present & child.exclusive & parent_has
        new_private = present & child.exclusive & ~parent_has
    out = np.full(len(child), PageClass.NOT_PRESENT, dtype=np.uint8)
    out[~present & child.swapped] = PageClass.SWAPPED
    out[shared] = PageClass.SHARED
    out[copied] = PageClass.COPIED
    out[new_private] = PageClass.NEW_PRIVATE
    return out


def _valid_pool_header(raw: bytes, pool_size: int) -> bool:
    *_, szidx, nextoffset, maxnextoffset = _POOL_HEADER.unpack_from(raw)
    size = (szidx + 1) * 16
    return bool(szidx < 64 and maxnextoffset == pool_size - size and 48 <= nextoffset <= pool_size)


def probe_pymalloc(procfs: ProcFS, pid: int, regions: Sequence[MapEntry]) -> list[bool]:
    """For each anonymous region: does its first pool-aligned address hold a pymalloc pool header?

    pymalloc mmaps arenas (256 KiB on 3.8/3.9, 1 MiB on 3.10+) and the kernel merges adjacent
    ones into one mapping, so size alone does not identify them. The first pool of an arena is
    the first one used, and its header is validated exactly (maxnextoffset == pool - block).
    Only pages the pagemap shows present are read: reading a page that is not present through
    /proc/PID/mem would fault it into the target (zero page, page cache).
    Unreadable memory (no ptrace access) gives False for every region.
    """
    found = [False] * len(regions)
    try:
        with procfs.open_file(pid, "pagemap") as pagemap, procfs.open_file(pid, "mem") as mem:
            buf = bytearray(_POOL_HEADER.size)
            entry = bytearray(8)
            for i, r in enumerate(regions):
                if r.inode != 0 or r.path:
                    continue
                for pool in POOL_SIZES:
                    addr = (r.start + pool - 1) & ~(pool - 1)
                    if addr + pool > r.end:
                        continue
                    if pagemap.readinto(memoryview(entry), addr // PAGE_SIZE * 8) != 8:
                        continue
                    if not int.from_bytes(entry, "little") >> 63:  # not present
                        continue
                    got = mem.readinto(memoryview(buf), addr)
                    if got == len(buf) and _valid_pool_header(bytes(buf), pool):
                        found[i] = True
                        break
    except ProcfsError:
        return [False] * len(regions)
    return found


def mapping_kind(m: MapEntry, is_pymalloc: bool) -> str:
    """Kind of a private writable mapping, for the breakdown.

    [heap] is the malloc heap (brk); [stack] the main thread stack; any file-backed mapping
    is library data (.data/.bss and relro of shared objects, writable private file maps);
    an anonymous mapping with a pymalloc pool header at its start is pymalloc arenas
    (`probe_pymalloc`); other anonymous mappings are "anon": malloc's mmap'd chunks and
    per-thread arenas, numpy buffers, thread stacks.
    """
    if m.path == "[heap]":
        return "malloc-heap"
    if m.path.startswith("[stack"):
        return "stack"
    if m.inode != 0 or (m.path and not m.path.startswith("[")):
        return "library-data"
    return "pymalloc" if is_pymalloc else "anon"


def class_counts(classes: U8, region_index: I64, n_regions: int) -> I64:
    """Pages per (region, PageClass): an (n_regions, len(PageClass)) matrix."""
    ncls = len(PageClass)
    flat = np.bincount(region_index * ncls + classes, minlength=n_regions * ncls)
    return flat.reshape(n_regions, ncls).astype(np.int64)


def bytes_by_kind(counts: I64, region_kinds: Sequence[str]) -> dict[str, dict[str, int]]:
    """Bytes per mapping kind and page class: {kind: {"copied": n, ...}}, from the per-region
    page counts of `class_counts`."""
    out: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        rows = [i for i, k in enumerate(region_kinds) if k == kind]
        if not rows:
            continue
        per_class = counts[rows].sum(axis=0)
        row = {name: int(per_class[int(cls)]) * PAGE_SIZE for cls, name in CLASS_NAMES.items()}
        if any(row.values()):
            out[kind] = row
    return out
