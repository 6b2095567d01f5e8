"""COW scans wired into memscope: `run` with scheduled scans, the report, `memscope scan`.

Real runs of the fixtures under one target CPython (the per-version ground truth is in
test_scan_groundtruth.py); the JSON report is validated against the shipped schema.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from memscope.cli import cli
from memscope.cow.scan import scan_process
from memscope.cow.store import MAX_TYPES, read_scans, write_scan
from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter, open_recording
from memscope.report.json_report import load_schema
from tests.conftest import fixture, target_python
from tests.live_recording import full_scan_since, stop_when

pytestmark = pytest.mark.slow

MiB = 1 << 20
WORKLOADS = Path(__file__).parent / "workloads.py"
PYTHON = target_python("3.12") or target_python("3.11")


MEMSCOPE = shutil.which("memscope") or os.path.join(os.path.dirname(sys.executable), "memscope")


def memscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MEMSCOPE, *args], capture_output=True, text=True, timeout=120, check=False
    )


def record_fixture(tmp: Path, name: str, *extra: str) -> dict[str, Any]:
    if PYTHON is None:
        pytest.skip("no CPython 3.11/3.12 target")
    out = tmp / f"{name}.memscope"
    # The workers hold until each has a full scan started after its work was done (an event,
    # not a fixed hold: a full scan takes seconds on a loaded machine); then SIGTERM to
    # memscope is forwarded to the command, which ends with the status of that signal.
    proc = subprocess.Popen(
        [MEMSCOPE, "run", "-q", "-o", str(out), "--", PYTHON, fixture(name),
         "--workers", "2", "--delay", "0.5", "--hold", "300", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        worked: dict[int, float] = {}  # worker pid -> when its work was seen done
        while len(worked) < 2 and (line := proc.stdout.readline()):
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") == "worked":
                worked[int(event["pid"])] = time.time()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    _, err = stop_when(proc, lambda: all(full_scan_since(out, pid, t)
                                         for pid, t in worked.items()), "full scans")
    assert len(worked) == 2 and proc.returncode == 128 + signal.SIGTERM, err
    report = memscope("report", str(out), "--format", "json")
    assert report.returncode == 0, report.stderr
    doc: dict[str, Any] = json.loads(report.stdout)
    jsonschema.validate(doc, load_schema())
    doc["_text"] = memscope("report", str(out)).stdout
    doc["_path"] = str(out)
    return doc


@pytest.fixture(scope="module")
def preload_list(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return record_fixture(tmp_path_factory.mktemp("cow"), "preload_list")


@pytest.fixture(scope="module")
def gc_freeze(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return record_fixture(tmp_path_factory.mktemp("cow"), "gc_freeze")


def workers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["processes"] if p["role"] == "worker"]


def test_run_scans_each_worker_after_it_copied_the_list(preload_list: dict[str, Any]) -> None:
    for worker in workers(preload_list):
        cow = worker["cow"]
        assert cow["mode"] == "pfn"
        assert cow["copied_bytes"] >= 58 * MiB  # the 2M-int list, per worker
        assert cow["by_type"][0]["type"] == "int"
        assert cow["by_type"][0]["bytes"] >= 0.9 * cow["copied_bytes"]
        assert cow["scans"] >= 2  # a baseline at birth, then after the copying
        assert cow["timeline"]["copied"][0] < 2 * MiB
        assert cow["timeline"]["copied"][-1] == cow["copied_bytes"]
        assert max(r for r in cow["timeline"]["copy_rate"] if r is not None) > 1 * MiB
    (advice,) = preload_list["advice"]
    assert advice["kind"] == "compact-data"
    assert advice["types"] == ["int"]
    assert advice["bytes"] >= 2 * 58 * MiB


def test_text_report_tells_what_why_and_fix(preload_list: dict[str, Any]) -> None:
    text = preload_list["_text"]
    assert "Copy-on-write: latest scan per worker" in text
    assert "transient (refcount)" in text
    assert "numpy array or array.array" in text


def test_gc_freeze_fixture_gets_the_freeze_recipe(gc_freeze: dict[str, Any]) -> None:
    for worker in workers(gc_freeze):
        named = [t for t in worker["cow"]["by_type"] if t["type"] not in ("buffer",
                                                                          "(unattributed)")]
        assert named[0]["type"] == "__main__.Record"
    kinds = [a["kind"] for a in gc_freeze["advice"]]
    assert kinds[0] == "gc-freeze"
    assert "__main__.Record" in gc_freeze["advice"][0]["types"]
    assert "gc.freeze()" in gc_freeze["_text"]


def test_scans_round_trip_through_the_recording(preload_list: dict[str, Any]) -> None:
    rec = open_recording(preload_list["_path"])
    try:
        scans = read_scans(rec.conn)
    finally:
        rec.close()
    assert len(scans) == 2  # the two workers
    for series in scans.values():
        latest = series[-1]
        assert latest.by_kind["pymalloc"]["copied"] >= 0.95 * latest.copied_bytes
        assert sum(latest.by_cause.values()) == latest.copied_bytes


def test_cow_interval_zero_disables_scans(tmp_path: Path) -> None:
    if PYTHON is None:
        pytest.skip("no CPython 3.11/3.12 target")
    out = tmp_path / "off.memscope"
    run = memscope("run", "-q", "--cow-interval", "0", "-o", str(out), "--", PYTHON,
                   fixture("preload_list"), "--workers", "1", "--delay", "0.2", "--hold", "0.5",
                   "--size", "1000")
    assert run.returncode == 0, run.stderr
    rec = open_recording(str(out))
    try:
        assert read_scans(rec.conn) == {}
    finally:
        rec.close()


def test_bad_cow_interval_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["run", "--cow-interval", "often", "--", "true"])
    assert result.exit_code == 2
    assert "'often' is not 'auto' or a number of seconds" in result.output


@pytest.fixture(scope="module")
def bytearray_child() -> Any:
    if PYTHON is None:
        pytest.skip("no CPython 3.11/3.12 target")
    proc = subprocess.Popen([PYTHON, str(WORKLOADS), "bytearray"], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    parent, child, _ = proc.stdout.readline().split()
    yield int(parent), int(child)
    os.kill(int(child), signal.SIGKILL)
    proc.wait()


def test_scan_command_json(bytearray_child: tuple[int, int]) -> None:
    parent, child = bytearray_child
    result = CliRunner().invoke(cli, ["scan", str(child), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["parent_pid"] == parent
    assert doc["cow"]["by_cause"]["data"] >= 32 * MiB - 4096
    assert doc["advice"][0]["kind"] == "data-writes"
    jsonschema.validate(doc["cow"], load_schema()["properties"]["processes"]["items"][
        "properties"]["cow"])


def test_scan_command_text_and_forced_mode(bytearray_child: tuple[int, int]) -> None:
    _, child = bytearray_child
    result = CliRunner().invoke(cli, ["scan", str(child), "--mode", "exclusive-bit"])
    assert result.exit_code == 0, result.output
    assert "mode exclusive-bit" in result.output
    assert "bytearray" in result.output
    assert "data writes" in result.output


def test_scan_command_unknown_pid_is_one_line_error() -> None:
    result = CliRunner().invoke(cli, ["scan", "999999999"])
    assert result.exit_code == 2
    assert "no process with PID 999999999" in result.output
    assert "Traceback" not in result.output


def test_write_scan_keeps_the_largest_types(tmp_path: Path,
                                            bytearray_child: tuple[int, int]) -> None:
    parent, child = bytearray_child
    scan = scan_process(child, parent, ProcFS())
    writer = RecordingWriter(str(tmp_path / "r.memscope"), {})
    pid_row = writer.add_process(pid=child, start_ticks=1, ppid=parent, parent_id=None,
                                 role="worker", cmdline=[], exe=None, python_version=None,
                                 started_at=0.0)
    write_scan(writer.conn, pid_row, scan)
    writer.close()
    rec = open_recording(str(tmp_path / "r.memscope"))
    try:
        (back,) = read_scans(rec.conn)[pid_row]
    finally:
        rec.close()
    assert back.copied_bytes == scan.copied_bytes
    assert back.by_cause == scan.by_cause
    assert back.by_kind == {k: {c: b for c, b in v.items() if b} for k, v in scan.by_kind.items()
                            if any(v.values())}
    assert back.by_type[0] == scan.by_type[0]
    assert sum(t.bytes for t in back.by_type) == sum(t.bytes for t in scan.by_type)
    # every type kept exactly (the largest MAX_TYPES, the rest summed as "(other)")
    scan_types = {t.type: t for t in scan.by_type}
    assert len(back.by_type) == min(len(scan.by_type), MAX_TYPES)
    for t in back.by_type:
        if t.type != "(other)" or len(scan.by_type) <= MAX_TYPES:
            assert scan_types[t.type] == t
    kept = {t.type for t in back.by_type}
    for name, row in scan.by_type_cause.items():
        if name in kept and name != "(other)":
            assert back.by_type_cause[name] == row
    # schema 3: the detail is one compact row per scan, and no cow_by_* rows exist
    with sqlite3.connect(tmp_path / "r.memscope") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert not any(t.startswith("cow_by_") for t in tables)
        (n, size), = conn.execute("SELECT COUNT(*), SUM(LENGTH(data)) FROM cow_details")
    assert n == 1 and size > 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop CAP_SYS_ADMIN")
def test_without_cap_sys_admin_the_scan_falls_back_to_the_exclusive_bit(
    bytearray_child: tuple[int, int],
) -> None:
    # GIVEN memscope without CAP_SYS_ADMIN (PFNs read as 0), still able to read the target
    _, child = bytearray_child
    done = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", MEMSCOPE, "scan", str(child), "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    cow = json.loads(done.stdout)["cow"]
    # THEN the mode says so, and the copies and their cause are the same as with PFNs
    assert cow["mode"] == "exclusive-bit"
    assert 32 * MiB <= cow["copied_bytes"] <= 34 * MiB
    assert cow["by_cause"]["data"] >= 32 * MiB - 4096
