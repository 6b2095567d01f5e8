"""Copied bytes never exceed what the worker holds privately (issue 16, deliverable 3).

Accounting: a *copied* page is one the worker maps exclusively (pagemap bit 56: the kernel's
Private_Clean/Private_Dirty) at an address where the parent has a page, a different one in
"pfn" mode. Every page is counted once, at its virtual address; swapped pages are a class of
their own (not copied, not in USS); file pages never count as copied. So at any moment
copied ≤ Private_Clean + Private_Dirty (USS).

GIVEN every fixture (and a parent that writes its own preloaded list after forking idle
children) recorded with COW scans every 0.5 s
WHEN each scan's copied bytes are compared with the worker's USS around that scan (the
largest full sample from one interval before the scan to one after it ended)
THEN copied ≤ USS for every scan.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from memscope.recording import open_recording
from tests.check.helpers import FIXTURES, memscope

HERE = Path(__file__).resolve().parent
SHORT = ("--workers", "2", "--delay", "0.5", "--hold", "1.5")
CASES = {
    "preload_list": (FIXTURES / "preload_list.py", *SHORT, "--size", "300000"),
    "preload_numpy": (FIXTURES / "preload_numpy.py", *SHORT),
    "gc_freeze": (FIXTURES / "gc_freeze.py", *SHORT),
    "gc_freeze_frozen": (FIXTURES / "gc_freeze.py", *SHORT, "--freeze"),
    "mutate_bytearray": (FIXTURES / "mutate_bytearray.py", *SHORT),
    "mp_pool": (FIXTURES / "mp_pool.py", "--workers", "2", "--tasks", "8"),
    "leaky_worker": (FIXTURES / "leaky_worker.py", "--workers", "2", "--leaky-workers", "1",
                     "--duration", "2", "--delay", "0.2", "--hold", "0.3"),
    "parent_writes": (HERE / "parent_writes.py", "--workers", "2", "--hold", "1.5"),
}
MARGIN = 0.1  # s: the recording's sampling interval


def violations(path: Path) -> tuple[int, list[tuple[int, int, int]]]:
    """(scans checked, [(process_id, copied, USS around the scan)] where copied > USS)."""
    bad = []
    rec = open_recording(str(path))
    try:
        scans = rec.conn.execute(
            "SELECT process_id, t, duration_s, copied_bytes FROM cow_scans").fetchall()
        cols = rec.columns(("uss",))
        checked = 0
        for process_id, t, duration, copied in scans:
            near = ((cols.process_id == process_id) & (cols.t >= t - MARGIN)
                    & (cols.t <= t + duration + MARGIN) & ~np.isnan(cols.values["uss"]))
            if not near.any():
                continue
            uss = int(cols.values["uss"][near].max())
            checked += 1
            if copied > uss:
                bad.append((process_id, copied, uss))
    finally:
        rec.close()
    return checked, bad


@pytest.mark.parametrize("case", list(CASES))
def test_copied_never_exceeds_uss(case: str, tmp_path: Path) -> None:
    script, *args = CASES[case]
    path = tmp_path / f"{case}.memscope"
    done = memscope("run", "-q", "-i", str(MARGIN), "--cow-interval", "0.5", "-o", str(path),
                    "--", sys.executable, str(script), *args)
    assert done.returncode == 0, done.stderr
    checked, bad = violations(path)
    assert checked >= 2, "no COW scan had a full sample around it"
    assert not bad, f"copied > USS: {[(p, c >> 10, u >> 10) for p, c, u in bad]} (KiB)"
