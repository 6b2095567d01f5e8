"""The feature pipeline: a recording and a summary are the same whatever was imported first.

Each variant runs in a fresh interpreter (a subprocess), imports one set of modules first,
then writes an empty recording (its schema) or builds the summary of a real recording, so no
registry filled by an earlier import in this test process can hide a difference.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from memscope.features import FEATURES, FeatureOptions, build_hooks, recording_tables
from tests.conftest import fixture

FIRST_IMPORTS = (
    "",
    "import memscope.recording",
    "import memscope.analysis.summary",
    "import memscope.report",
    "import memscope.check.metrics",
    "import memscope.cli.run, memscope.cli.attach, memscope.pytest_plugin",
)

SCHEMA = """
import sqlite3, sys
{first}
from memscope.recording import RecordingWriter
w = RecordingWriter(sys.argv[1], {{}})
w.close()
conn = sqlite3.connect(sys.argv[1])
for name, sql in conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name"):
    print(name, sql)
"""

SUMMARY = """
import json, sys
{first}
from memscope.analysis.summary import build_summary
from memscope.recording import open_recording
summary = build_summary(open_recording(sys.argv[1]))
from memscope.report.json_report import to_document
print(json.dumps(to_document(summary), sort_keys=True))
print("cow section:", summary.cow is not None, "workers:", len(summary.cow.processes))
"""


def _fresh(code: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_recording_has_every_feature_table(tmp_path: Path) -> None:
    outputs = {
        first: _fresh(SCHEMA.format(first=first), str(tmp_path / f"s{i}.memscope"))
        for i, first in enumerate(FIRST_IMPORTS)
    }
    # THEN the schema is byte-identical whatever was imported first
    assert len(set(outputs.values())) == 1
    schema = next(iter(outputs.values()))
    for table in ("cow_scans", "cow_estimates", "cow_sites", "leak_snapshots", "notes"):
        assert f"\n{table} CREATE TABLE" in "\n" + schema


@pytest.mark.slow
def test_summary_is_identical_whatever_was_imported_first(tmp_path: Path) -> None:
    # GIVEN a real recording with COW scans (2 workers copying 300k ints each)
    path = str(tmp_path / "r.memscope")
    run = subprocess.run(
        [sys.executable, "-c", "from memscope.cli import main; main()", "run", "-q", "-i", "0.1",
         "-o", path, "--", sys.executable, fixture("preload_list"), "--workers", "2",
         "--size", "300000", "--delay", "0.3", "--hold", "1.0"],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    outputs = {first: _fresh(SUMMARY.format(first=first), path) for first in FIRST_IMPORTS}
    assert len(set(outputs.values())) == 1
    # AND the bare `build_summary` (nothing imported first) has the COW section
    assert "cow section: True workers: 2" in outputs[""]


def test_the_feature_list_is_explicit_and_ordered() -> None:
    names = [f.name for f in FEATURES]
    assert names == ["notes", "cow", "steady", "libraries", "frameworks", "sites", "leaks",
                     "metrics", "live"]
    # every DDL statement is idempotent (a writer may run it on an existing file)
    assert all(" IF NOT EXISTS " in ddl for ddl in recording_tables())
    # options are explicit: COW off still gets the hook (SIGUSR1), sites/leaks only on request
    hooks = build_hooks(FeatureOptions(cow_interval=0))
    assert [type(h).__name__ for h in hooks] == ["CowScheduler", "LibraryWatch"]
    hooks = build_hooks(FeatureOptions(leak_census=True))
    assert [type(h).__name__ for h in hooks] == ["CowScheduler", "LibraryWatch", "LeakHook"]
