"""Helpers for the heap parser tests: run the target workload, pick pages, sum bytes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from memscope.cow._model import HeapMap
from memscope.procfs import ProcFS
from tests.conftest import target_python

PYENV = Path("/root/.pyenv/versions")
# pyenv versions (exact), then the Debian builds of tests/conftest.DEBIAN_VERSIONS.
VERSIONS = ["3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0", "3.14", "3.15"]
TARGET = Path(__file__).with_name("heap_target.py")
PAGE = 4096


@dataclass
class Worker:
    pid: int
    truth: dict[str, object]
    record_ids: npt.NDArray[np.uint64]
    int_pages: npt.NDArray[np.uint64]


@contextmanager
def forked_worker(version: str, tmp: Path, n_ints: int, n_records: int) -> Iterator[Worker]:
    """Run heap_target.py under CPython `version`; yield its forked child (the worker).

    An exact pyenv version (3.8.18) runs pyenv's build; a major.minor one (3.14) runs what
    tests.conftest.target_python finds, and the test is skipped when it is not installed."""
    if (PYENV / version).is_dir():
        python = PYENV / version / "bin" / "python3"
    else:
        found = target_python(version)
        if found is None:
            pytest.skip(f"CPython {version} is not installed (../shared/tools/cpython-from-debian)")
        python = Path(found)
    out = tmp / f"truth-{version}"
    proc = subprocess.Popen(
        [str(python), str(TARGET), str(n_ints), str(n_records), str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        truth = json.loads(proc.stdout.readline())
        yield Worker(
            pid=int(truth["pid"]),
            truth=truth,
            record_ids=np.fromfile(f"{out}.records", dtype=np.uint64),
            int_pages=np.fromfile(f"{out}.intpages", dtype=np.uint64) << np.uint64(12),
        )
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def private_pages(pid: int, exclusive_only: bool) -> npt.NDArray[np.uint64]:
    """Present pages of anonymous rw mappings and [heap]; optionally only exclusive ones.

    Exclusive (pagemap bit 56) pages of a forked child are the ones it copied or allocated.
    """
    want = np.uint64(1 << 63) | (np.uint64(1 << 56) if exclusive_only else np.uint64(0))
    found = []
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        for m in ProcFS().maps(pid):
            if not m.perms.startswith("rw") or (m.path and m.path != "[heap]"):
                continue
            f.seek(m.start // PAGE * 8)
            entries = np.frombuffer(f.read((m.end - m.start) // PAGE * 8), dtype=np.uint64)
            hit = np.flatnonzero(entries & want == want).astype(np.uint64)
            found.append(np.uint64(m.start) + hit * np.uint64(PAGE))
    return np.concatenate(found) if found else np.zeros(0, dtype=np.uint64)


def bytes_by_type_in_pages(heap: HeapMap, pages: npt.NDArray[np.uint64]) -> dict[str, int]:
    """Bytes of each type name inside `pages`, counting pymalloc-sized blocks (<= 512 bytes,
    so spanning at most two pages) clipped to the pages."""
    pages = np.sort(pages)
    out: dict[str, int] = {}
    small = heap.block_size <= 512
    start = heap.block_start[small].astype(np.int64)
    end = start + heap.block_size[small]
    type_index = heap.type_index[small]
    for nth_page in range(2):
        page = (start // PAGE + nth_page) * PAGE
        idx = np.minimum(np.searchsorted(pages, page.astype(np.uint64)), len(pages) - 1)
        inside = pages[idx] == page.astype(np.uint64)
        lo = np.maximum(start, page)
        hi = np.minimum(end, page + PAGE)
        size = np.where(inside & (hi > lo), hi - lo, 0)
        for i, name in enumerate(heap.type_names):
            out[name] = out.get(name, 0) + int(size[type_index == i].sum())
    return out
