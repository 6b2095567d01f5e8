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
import json
import os
import signal
import subprocess
import sys
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


_PEAK_PROBE = """
import json, sys
from memscope._malloc import return_freed_buffers
from memscope.cow.scan import scan_process
return_freed_buffers()  # as a recording session does (memscope.session.record)
pid, ppid = int(sys.argv[1]), int(sys.argv[2])

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

scan_process(pid, ppid)  # the first scan also detects the interpreter, indexes the heap
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS
scan = scan_process(pid, ppid)
print(json.dumps({"copied": scan.copied_bytes, "peak": status("VmHWM:") - before,
                  "kept": status("VmRSS:") - before}))
"""


def test_a_scan_holds_about_one_slice_at_a_time() -> None:
    """A long recording scans workers again and again; each scan's peak is memscope's.

    Measured: ~4.5 MiB above the RSS before the scan, for 16 or 64 MiB copied (3.4x the
    copied bytes, 55 and 108+ MiB, with the former 32 MiB slices); nothing kept after it."""
    # GIVEN a worker that copied 62 MiB (2M ints iterated), scanned in a fresh interpreter
    proc, parent, children = _fork(require_python("3.11"), "ints")
    try:
        # WHEN it is scanned a second time (as every later scan of a recording)
        out = subprocess.run([sys.executable, "-c", _PEAK_PROBE, str(children["work"]),
                              str(parent)], capture_output=True, text=True, timeout=300,
                             check=True)
        got = json.loads(out.stdout)
    finally:
        proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(children["work"], signal.SIGKILL)
        proc.wait()
    # THEN its peak is a few slices' worth, not a multiple of the copied bytes, and it
    # keeps nothing resident
    assert got["copied"] > 60 * MiB
    assert got["peak"] <= 10 * MiB, got
    assert got["kept"] <= 1 * MiB, got
