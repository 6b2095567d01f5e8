"""How each worker was made (issue 13, item 2), on real pools.

GIVEN a multiprocessing Pool(2) whose master preloads 300k ints, on CPython 3.14 with its
default start method (forkserver on Linux), on 3.14 with set_start_method('fork'), and with
'spawn' on memscope's own interpreter
WHEN recorded with `memscope run --cow-interval` and reported as JSON and text
THEN forkserver workers are workers (role) made by "forkserver", their COW scans are measured
against the fork server (their actual parent), and the report says they share nothing with
the master and what to do; forked workers get no such note; spawned ones get the spawn note.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from memscope.cli import cli
from memscope.recording import open_recording
from tests.check.helpers import MAIN

HERE = Path(__file__).resolve().parent
PY314 = Path("/root/.cache/cpython-debian/3.14/usr/bin/python3.14")


def record(tmp_path: Path, python: str, *args: str) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path / "pool.memscope"
    done = subprocess.run([sys.executable, "-c", MAIN, "run", "-q", "-i", "0.1",
                           "--cow-interval", "0.3", "-o", str(out), "--", python,
                           str(HERE / "pool_target.py"), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runner = CliRunner()
    doc = runner.invoke(cli, ["report", str(out), "--format", "json"])
    text = runner.invoke(cli, ["report", str(out)], terminal_width=400)
    assert doc.exit_code == 0 and text.exit_code == 0, (doc.output, text.output)
    return out, json.loads(doc.stdout), text.stdout


def scan_parents(path: Path) -> dict[int, set[int]]:
    rec = open_recording(str(path))
    try:
        rows = rec.conn.execute("SELECT pid, parent_pid FROM cow_scans").fetchall()
    finally:
        rec.close()
    out: dict[int, set[int]] = {}
    for pid, parent in rows:
        out.setdefault(pid, set()).add(parent)
    return out


def needs_314() -> None:
    if not PY314.exists():
        pytest.skip(f"no CPython 3.14 at {PY314} (../shared/tools/cpython-from-debian 3.14)")


def test_314_default_pool_is_forkserved(tmp_path: Path) -> None:
    needs_314()
    path, doc, text = record(tmp_path, str(PY314))
    root = doc["processes"][0]
    assert root["role"] == "root"
    servers = [p for p in doc["processes"] if p["ppid"] == root["pid"]
               and "multiprocessing.forkserver" in " ".join(p["cmdline"])]
    assert len(servers) == 1 and servers[0]["role"] == "descendant", servers
    server = servers[0]["pid"]
    workers = [p for p in doc["processes"] if p["role"] == "worker"]
    assert len(workers) == 2, [(p["pid"], p["role"], p["cmdline"]) for p in doc["processes"]]
    assert all(w["ppid"] == server and w["made_by"] == "forkserver" for w in workers), workers
    parents = scan_parents(path)
    assert all(parents.get(w["pid"]) == {server} for w in workers), parents  # actual parent
    notes = doc["start_methods"]["notes"]
    assert [n["method"] for n in notes] == ["forkserver"], notes
    assert sorted(notes[0]["pids"]) == sorted(w["pid"] for w in workers)
    assert notes[0]["master_pid"] == root["pid"] and notes[0]["parent_pids"] == [server]
    assert "share nothing" in text and "set_forkserver_preload" in text, text
    assert "set_start_method('fork')" in text and "shared_memory" in text


def test_314_with_fork_has_no_explanation(tmp_path: Path) -> None:
    needs_314()
    path, doc, text = record(tmp_path, str(PY314), "fork")
    root = doc["processes"][0]
    workers = [p for p in doc["processes"] if p["role"] == "worker"]
    assert len(workers) == 2, [(p["pid"], p["role"], p["cmdline"]) for p in doc["processes"]]
    assert all(w["ppid"] == root["pid"] and w["made_by"] == "fork" for w in workers), workers
    parents = scan_parents(path)
    assert all(parents.get(w["pid"]) == {root["pid"]} for w in workers), parents
    assert doc["start_methods"] == {"workers": {"fork": 2}, "notes": []}
    assert "share nothing with the master" not in text


def test_spawned_pool_workers(tmp_path: Path) -> None:
    path, doc, text = record(tmp_path, sys.executable, "spawn")
    root = doc["processes"][0]
    workers = [p for p in doc["processes"] if p["role"] == "worker"]
    assert len(workers) == 2, [(p["pid"], p["role"], p["cmdline"]) for p in doc["processes"]]
    assert all(w["ppid"] == root["pid"] and w["made_by"] == "spawn" for w in workers), workers
    tracker = [p for p in doc["processes"] if "resource_tracker" in " ".join(p["cmdline"])]
    assert tracker and all(p["role"] == "descendant" for p in tracker)
    assert [n["method"] for n in doc["start_methods"]["notes"]] == ["spawn"]
    assert "were spawned" in text and "share nothing" in text
    # a file written before process_exec (and the master/wrapper roles) existed reads as before
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE process_exec")
    old = CliRunner().invoke(cli, ["report", str(path), "--format", "json"])
    assert old.exit_code == 0, old.output
    assert [p.get("made_by") for p in json.loads(old.stdout)["processes"]] == [
        p.get("made_by") for p in doc["processes"]]


def test_dask_nanny_spawns_its_workers(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "dask.memscope"
    done = subprocess.run([sys.executable, "-c", MAIN, "run", "-q", "-i", "0.1", "-o", str(out),
                           "--", sys.executable, str(HERE / "dask_target.py")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = CliRunner().invoke(cli, ["report", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    root = doc["processes"][0]
    workers = [p for p in doc["processes"] if p["role"] == "worker"]
    assert len(workers) == 2, [(p["pid"], p["role"], p["cmdline"]) for p in doc["processes"]]
    # the title hides the exec; the kernel's exec events (or the command line seen before the
    # title) tell it
    assert all(w["ppid"] == root["pid"] and w["made_by"] == "spawn" for w in workers), workers
    assert [n["method"] for n in doc["start_methods"]["notes"]] == ["spawn"]
