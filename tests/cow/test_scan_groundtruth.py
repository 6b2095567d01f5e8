"""Ground truth on real forks, on every CPython 3.8-3.15: what the scan must show per workload.

Each (python, workload) forks once (tests/cow/workloads.py), is scanned while the child
holds, then killed; the scans are cached for the module so several assertions share them.

- ints: the child iterates a list of 2M ints -> >= 90% of copied bytes typed int, cause
  transient/refcount;
- instances: gc.collect() over 300k Item instances -> Item the top type, cause gc/transient;
- freeze: the same, the parent used gc.freeze() -> copied drops by >= 95%;
- numpy: sums a 64 MiB float64 array -> copied < 1 MiB over an idle sibling's;
- bytearray: writes every 64th byte of 32 MiB -> data writes dominate.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from memscope.analysis.advice import advise
from memscope.cow._model import CowScan
from memscope.cow.scan import scan_process
from memscope.procfs import ProcessGone, ProcFS
from tests.conftest import ALL_VERSIONS, TARGET_VERSIONS, target_python

pytestmark = pytest.mark.slow

WORKLOADS = Path(__file__).parent / "workloads.py"
MiB = 1 << 20
_SCANS: dict[tuple[str, str], dict[str, CowScan]] = {}
_RSS_GROWTH: dict[tuple[str, str], int] = {}


def _fork(python: str, workload: str) -> tuple[subprocess.Popen[str], int, dict[str, int]]:
    """Start the workload; returns the process, the parent's pid and {role: child pid}."""
    proc = subprocess.Popen([python, str(WORKLOADS), workload], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    children: dict[str, int] = {}
    parent = 0
    for _ in range(2 if workload == "numpy" else 1):
        line = proc.stdout.readline()
        assert line, f"{workload} under {python} did not start (exit {proc.wait()})"
        ppid, pid, role = line.split()
        parent, children[role] = int(ppid), int(pid)
    return proc, parent, children


def require_python(version: str) -> str:
    """The interpreter of `version`, or skip saying how to get it."""
    python = target_python(version)
    if python is None:
        how = "pyenv" if version in TARGET_VERSIONS else "../shared/tools/cpython-from-debian"
        pytest.skip(f"CPython {version} is not installed (install it with {how})")
    return python


def scans(version: str, workload: str) -> dict[str, CowScan]:
    """{mode: scan} of the workload's child under `version` (forked once per module)."""
    key = (version, workload)
    if key not in _SCANS:
        python = require_python(version)
        if workload == "numpy":
            has_numpy = subprocess.run([python, "-c", "import numpy"], capture_output=True)
            if has_numpy.returncode:
                pytest.skip(f"CPython {version} has no numpy (no wheels for it yet)")
        proc, parent, children = _fork(python, workload)
        child = children["work"]
        try:
            fs = ProcFS()
            rss_before = fs.rollup(child).rss
            _SCANS[key] = {
                "pfn": scan_process(child, parent, fs),
                "exclusive-bit": scan_process(child, parent, fs, mode="exclusive-bit"),
            }
            _RSS_GROWTH[key] = fs.rollup(child).rss - rss_before
            if "control" in children:
                _SCANS[key]["control"] = scan_process(children["control"], parent, fs)
        finally:
            for pid in children.values():
                os.kill(pid, signal.SIGKILL)
            proc.wait()
    return _SCANS[key]


def type_bytes(scan: CowScan, name: str) -> int:
    return sum(t.bytes for t in scan.by_type if t.type == name)


def cause_bytes(scan: CowScan, type_name: str, *causes: str) -> int:
    row = scan.by_type_cause.get(type_name, {})
    return sum(row.get(c, 0) for c in causes)


@pytest.fixture(scope="module", autouse=True)
def _forget_scans() -> Iterator[None]:
    yield
    _SCANS.clear()
    _RSS_GROWTH.clear()


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_iterating_2m_ints_copies_int_pages_by_refcount_touches(version: str) -> None:
    scan = scans(version, "ints")["pfn"]
    assert scan.mode == "pfn"
    assert scan.target.startswith(f"CPython {version}.")
    # 2M ints in 32-byte blocks: ~61 MiB of pages, all copied by the loop.
    assert 58 * MiB <= scan.copied_bytes <= 70 * MiB
    assert type_bytes(scan, "int") >= 0.90 * scan.copied_bytes
    ints = next(t for t in scan.by_type if t.type == "int")
    assert 1_900_000 <= ints.objects <= 2_100_000
    # inc/dec pairs leave the pages byte-identical: transient, on pages without GC objects
    assert cause_bytes(scan, "int", "transient_refcount", "refcount") >= 0.95 * ints.bytes
    assert scan.by_kind["pymalloc"]["copied"] >= 0.95 * scan.copied_bytes
    (item,) = [a for a in advise([scan]) if a.kind == "compact-data"]
    assert item.types[0] == "int"
    assert item.bytes >= 0.9 * scan.copied_bytes


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_exclusive_bit_fallback_agrees_with_pfn_mode(version: str) -> None:
    by_mode = scans(version, "ints")
    pfn, bit = by_mode["pfn"], by_mode["exclusive-bit"]
    assert bit.mode == "exclusive-bit"
    # Nothing runs in either process between the two scans: both modes see the same copies.
    assert abs(bit.copied_bytes - pfn.copied_bytes) <= 64 * 1024
    assert abs(bit.new_private_bytes - pfn.new_private_bytes) <= 64 * 1024
    assert type_bytes(bit, "int") >= 0.90 * bit.copied_bytes


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_scans_barely_touch_the_target(version: str) -> None:
    # Reading /proc/PID/mem at a page the target never touched maps it (zero page or page
    # cache): shared, never copied, but counted in RSS. Two full scans stay well under 1 MiB.
    scans(version, "ints")
    assert 0 <= _RSS_GROWTH[(version, "ints")] < 1 * MiB


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_gc_collect_over_instances_copies_their_pages_via_gc(version: str) -> None:
    scan = scans(version, "instances")["pfn"]
    assert scan.copied_bytes >= 12 * MiB
    named = [t for t in scan.by_type if t.type not in ("buffer", "(unattributed)")]
    top = named[0]
    assert top.type == "__main__.Item"
    assert 290_000 <= top.objects <= 310_000
    # (their instance dicts' value arrays on 3.8-3.10 count as theirs: owned buffers)
    assert top.bytes >= 0.80 * scan.copied_bytes
    assert cause_bytes(scan, top.type, "gc", "transient_gc") >= 0.95 * top.bytes
    freeze = [a for a in advise([scan]) if a.kind == "gc-freeze"]
    assert freeze
    assert freeze[0].types[0] == "__main__.Item"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_gc_freeze_before_fork_cuts_copies_by_95_percent(version: str) -> None:
    plain = scans(version, "instances")["pfn"]
    frozen = scans(version, "freeze")["pfn"]
    assert frozen.copied_bytes <= 0.05 * plain.copied_bytes
    assert type_bytes(frozen, "__main__.Item") < 64 * 1024
    assert not [a for a in advise([frozen]) if a.kind == "gc-freeze"]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_reading_a_numpy_array_copies_almost_nothing(version: str) -> None:
    by_role = scans(version, "numpy")
    scan, control = by_role["pfn"], by_role["control"]
    # Reading the array copies < 1 MiB on top of what an idle fork of the same parent copies
    # by itself: about 0.2-0.9 MiB here (the at-fork hooks of threading, imported by numpy,
    # run Python code in the child; 3.12+ copies less thanks to immortal objects).
    assert scan.copied_bytes - control.copied_bytes < 1 * MiB
    assert scan.copied_bytes < 2 * MiB
    # the 64 MiB buffer is still shared (it sits in its own anonymous mapping)
    assert scan.by_kind["anon"]["shared"] >= 64 * MiB
    assert type_bytes(scan, "numpy.ndarray") < 64 * 1024


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_mutating_a_bytearray_is_data_writes(version: str) -> None:
    scan = scans(version, "bytearray")["pfn"]
    assert 32 * MiB <= scan.copied_bytes <= 34 * MiB
    assert scan.by_cause["data"] >= 0.95 * scan.copied_bytes
    assert cause_bytes(scan, "bytearray", "data") >= 32 * MiB - 64  # less its malloc header
    (item,) = [a for a in advise([scan]) if a.kind == "data-writes"]
    assert item.types == ["bytearray"]


def test_a_vanished_child_raises_process_gone() -> None:
    python = target_python("3.11") or target_python("3.12")
    if python is None:
        pytest.skip("no CPython 3.11/3.12")
    proc, parent, children = _fork(python, "ints")
    child = children["work"]
    os.kill(child, signal.SIGKILL)
    proc.wait()
    with pytest.raises(ProcessGone):
        scan_process(child, parent, ProcFS())


def test_a_non_python_fork_gets_page_level_results_with_the_reason(tmp_path: Path) -> None:
    # GIVEN a bash subshell: a fork of bash that does not exec
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        ["bash", "-c", f"( echo $BASHPID > {ready}; while :; do sleep 0.05; done ) & wait"]
    )
    child = 0
    try:
        for _ in range(200):
            if ready.exists() and ready.read_text().strip():
                break
            subprocess.run(["sleep", "0.01"], check=True)
        child = int(ready.read_text())
        # WHEN it is scanned against the bash that forked it
        scan = scan_process(child, proc.pid, ProcFS())
    finally:
        if child:  # the subshell outlives its parent's kill: end it too
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        proc.kill()
        proc.wait()
    # THEN pages are classified, objects are not, and the target says why
    assert scan.inherited_bytes > 0
    assert "not Python" in scan.target or "unknown" in scan.target
    assert set(scan.by_cause) <= {"write", "transient", "unread"}
    assert [t.type for t in scan.by_type] in ([], ["(unattributed)"])
