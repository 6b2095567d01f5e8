"""Notes reach every report naming the workers; advice always names its workers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memscope.analysis.advice import advise
from memscope.analysis.summary import build_summary
from memscope.cow._model import CowScan
from memscope.notes import NoteLog, group_notes
from memscope.recording import open_recording
from memscope.report.html_features import notes_section
from memscope.report.json_report import to_document
from memscope.report.text import render_text
from tests.conftest import fixture


def test_notes_group_by_message_with_their_workers() -> None:
    rows = [("cow", 4101, 1.0, "exited during its COW scan"),
            ("sites", 4102, 2.0, "COW sites not resolved: process 4102 no longer exists"),
            ("cow", 4103, 3.0, "exited during its COW scan"),
            ("sites", 4104, 4.0, "COW sites not resolved: process 4104 no longer exists")]
    notes = group_notes(rows)
    assert [(n.feature, n.pids) for n in notes] == [("cow", (4101, 4103)), ("sites", (4102, 4104))]
    assert notes[0].describe() == "cow: exited during its COW scan (workers 4101, 4103)"


@pytest.mark.slow
def test_notes_are_shown_in_text_json_and_html(tmp_path: Path) -> None:
    # GIVEN a real recording (2 forked workers) to which a feature added notes as it ran
    path = str(tmp_path / "n.memscope")
    run = subprocess.run(
        [sys.executable, "-c", "from memscope.cli import main; main()", "run", "-q", "-i", "0.1",
         "-o", path, "--", sys.executable, fixture("preload_list"), "--workers", "2",
         "--size", "1000", "--delay", "0.1", "--hold", "0.3"],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    rec = open_recording(path)
    workers = [p.pid for p in rec.processes if p.role == "worker"]
    rec.close()
    conn = sqlite3.connect(path)
    log = NoteLog("sites")
    for pid in workers:
        log.add(pid, 1.0, "COW sites not resolved: cannot reach agent")
    log.drain(conn)
    conn.commit()
    conn.close()
    rec = open_recording(path)
    summary = build_summary(rec)
    rec.close()
    who = f"(workers {workers[0]}, {workers[1]})"
    # THEN the text report, the JSON document and the HTML section name both workers
    from rich.console import Console
    console = Console(width=200, record=True)
    console.print(render_text(summary))
    assert f"sites: COW sites not resolved: cannot reach agent {who}" in console.export_text()
    doc = json.loads(json.dumps(to_document(summary)))
    assert {"feature": "sites", "pids": sorted(workers),
            "message": "COW sites not resolved: cannot reach agent"} in doc["notes"]
    html = notes_section(summary)
    assert html is not None and who in html


def test_advice_always_names_workers() -> None:
    # GIVEN 8 workers, each with 200 KiB of GC-header copies (below 256 KiB each, 1.6 MiB in all)
    scans = [CowScan(pid=500 + i, parent_pid=1, scanned_at=0.0, mode="pfn", inherited_bytes=1 << 26,
                     copied_bytes=200 << 10, shared_bytes=0, new_private_bytes=0, swapped_bytes=0,
                     by_type_cause={"dict": {"gc": 200 << 10}})
             for i in range(8)]
    (item,) = advise(scans)
    assert item.kind == "gc-freeze"
    assert item.pids == [500 + i for i in range(8)]  # never an empty "(workers )"
