"""A scan in bounded slices attributes what one pass over every copied page does.

Real forks (tests/cow/workloads.py): 2M iterated ints (62 MiB copied, in pymalloc arenas) and
a 32 MiB bytearray written every 64th byte (its data is one mmapped chunk; the bytearray
object that owns it lies in a pymalloc pool, in another slice). Each worker is scanned in
32 MiB slices (WHOLE: one or two here) and with the default 1 MiB slices (many): causes must
be equal and every type's bytes equal to within rounding, the bytearray's data typed by its
owner.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Iterator

import numpy as np
import pytest

import memscope.cow.scan_slices as scan_slices
from memscope.cow._model import CowScan
from memscope.cow.scan import scan_process
from memscope.procfs import ProcFS
from tests.cow.test_scan_groundtruth import _fork, require_python

MiB = 1 << 20
#: The reference: 32 MiB slices (the scanner's slices before 1 MiB ones; a worker copying
#: up to 32 MiB is one slice). Against a single slice of all pages, sliced scans (1 MiB
#: and 4 MiB alike) differ by a few hundred bytes of small objects (str, code, buffer) in
#: these workloads (blocks that straddle a cut), with main's scanner (4818e64) too.
WHOLE = 8192


@pytest.fixture(scope="module", params=[("3.11", "ints"), ("3.11", "bytearray"), ("3.8", "ints")])
def both(request: pytest.FixtureRequest) -> Iterator[tuple[str, CowScan, CowScan]]:
    version, workload = request.param
    proc, parent, children = _fork(require_python(version), workload)
    child = children["work"]
    fs = ProcFS()
    try:
        # A worker can still copy a page now and then (its interpreter's own bookkeeping):
        # compare a sliced scan with whole scans before and after it that agree.
        for _ in range(5):
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(scan_slices, "SLICE_PAGES", WHOLE)
                whole = scan_process(child, parent, fs)
            sliced = scan_process(child, parent, fs)  # the default slices: many
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(scan_slices, "SLICE_PAGES", WHOLE)
                after = scan_process(child, parent, fs)
            if after.by_cause == whole.by_cause:
                break
        yield workload, whole, sliced
    finally:
        proc.kill()
        for pid in children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_slices_cut_at_pool_boundaries() -> None:
    pages = np.arange(0, 40000 * 4096, 4096, dtype=np.uint64) + np.uint64(1 << 30)
    parts = scan_slices.slices(pages, size=1001)
    assert parts[0][0] == 0 and parts[-1][1] == len(pages)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert all(int(pages[lo]) % 16384 == 0 for lo, _ in parts)
    assert max(hi - lo for lo, hi in parts) <= 1001 + 3


def test_sliced_scan_equals_the_whole_scan(both: tuple[str, CowScan, CowScan]) -> None:
    workload, whole, sliced = both
    assert whole.copied_bytes > 8 * scan_slices.SLICE_PAGES * 4096  # several slices
    assert sliced.copied_bytes == whole.copied_bytes
    assert sliced.by_cause == whole.by_cause
    w = {t.type: t.bytes for t in whole.by_type}
    s = {t.type: t.bytes for t in sliced.by_type}
    assert set(s) == set(w)
    for name, nbytes in w.items():
        assert abs(s[name] - nbytes) <= max(64, nbytes // 1000), (name, s[name], nbytes)
    assert sliced.by_type[0].type == whole.by_type[0].type
    if workload == "bytearray":
        assert s["bytearray"] >= 30 * MiB  # the data chunk, typed by an owner in another slice
