"""The CI gate never passes on data it cannot see (issue 16, deliverable 1).

GIVEN a real recording of preload_list with COW scans: two workers wait 1 s, then iterate the
preloaded list and copy ~9 MiB of int pages each (rescans follow the copying)
WHEN one worker's scans are missing (it exited before its first scan), or each worker keeps
only the scan taken at its birth (the copy happened after it: stale)
THEN `worker.cow.copied` rules exit 2 naming the processes and why, in the table, markdown,
JUnit and GitHub outputs; `--allow-missing` judges the processes with a current value.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from lxml import etree

from memscope.cli import cli
from tests.check.helpers import DATA, FIXTURES, MiB, memscope


def check(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["check", *args], env=env)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gate") / "preload.memscope"
    done = memscope("run", "-q", "-i", "0.1", "-o", str(path), "--", sys.executable,
                    str(FIXTURES / "preload_list.py"), "--workers", "2", "--size", "300000",
                    "--delay", "1.0", "--hold", "2.5")  # copy well before the exit wave
    assert done.returncode == 0, done.stderr
    return path


def _copy(src: Path, dst: Path, where: str) -> Path:
    """A copy of the recording without the COW scans matching `where` (and their details)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.execute(f"DELETE FROM cow_scans WHERE {where}")
    # the scans' detail: cow_details (schema 3), cow_by_* rows in older recordings
    children = [t for (t,) in b.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if any(c[1] == "scan_id" for c in b.execute(f"PRAGMA table_info({t})"))]
    assert children
    for table in children:
        b.execute(f"DELETE FROM {table} WHERE scan_id NOT IN (SELECT id FROM cow_scans)")
    b.commit()
    b.close()
    return dst


def _workers(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM processes WHERE role = 'worker'")]


def test_complete_recording_is_judged(recorded: Path) -> None:
    result = check(str(recorded), "-r", "worker.cow.copied <= 1GiB", "--format", "json")
    doc = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert result.exit_code == 0, result.stdout
    assert doc["results"][0]["measured"] > 8 * MiB  # the copy was seen by a rescan


def test_a_worker_without_a_scan_makes_the_rule_exit_2(recorded: Path, tmp_path: Path) -> None:
    gone = _workers(recorded)[1]
    path = _copy(recorded, tmp_path / "missing.memscope", f"process_id = {gone}")
    result = check(str(path), "-r", "worker.cow.copied <= 1GiB")
    assert result.exit_code == 2  # on main: exit 0, "1 selected process(es) had no value"
    assert "1 selected process(es) have no current value" in result.output
    assert ": no value" in result.output
    allowed = check(str(path), "-r", "worker.cow.copied <= 1GiB", "--allow-missing")
    assert allowed.exit_code == 0
    assert "judged without 1 process(es)" in allowed.stdout


def test_a_stale_scan_makes_the_rule_exit_2_in_every_format(recorded: Path,
                                                             tmp_path: Path) -> None:
    births = "id NOT IN (SELECT MIN(id) FROM cow_scans GROUP BY process_id)"
    path = _copy(recorded, tmp_path / "stale.memscope", births)
    with sqlite3.connect(path) as conn:
        copied = [r[0] for r in conn.execute("SELECT copied_bytes FROM cow_scans")]
    assert copied and max(copied) < 4 * MiB  # GIVEN: the birth scans predate the copying
    rule = "worker.cow.copied <= 8MiB"  # each worker copied ~9 MiB after its birth scan

    md = check(str(path), "-r", rule, "--format", "markdown")
    assert md.exit_code == 2  # on main: exit 0, judged on the stale birth scan
    assert "is stale: USS grew" in md.stdout

    junit = tmp_path / "memscope.xml"
    check(str(path), "-r", rule, "--junit", str(junit))
    doc = etree.parse(str(junit))
    etree.XMLSchema(etree.parse(str(DATA / "junit.xsd"))).assertValid(doc)
    error = next(doc.getroot().iter("error"))
    assert "stale" in error.get("message")

    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    gh = check(str(path), "-r", rule, env=env)
    annotations = [ln for ln in gh.stdout.splitlines() if ln.startswith("::error ")]
    assert len(annotations) == 1 and "stale" in annotations[0]
    assert "stale" in (tmp_path / "summary.md").read_text()

    allowed = check(str(path), "-r", rule, "--allow-missing", "--format", "json")
    assert allowed.exit_code == 0  # judged on what was seen, and says so
    assert "stale" in allowed.stdout


def test_reports_show_who_copied_and_stale_scans(recorded: Path, tmp_path: Path) -> None:
    """Processes tables (text, HTML) have a copied column, marked when the scan is stale; the
    types table says its object counts are summed over workers."""
    births = "id NOT IN (SELECT MIN(id) FROM cow_scans GROUP BY process_id)"
    path = _copy(recorded, tmp_path / "stale.memscope", births)
    text = CliRunner().invoke(cli, ["report", str(path)]).stdout
    lines = text.splitlines()
    header = next(ln for ln in lines if "peak RSS" in ln)
    assert "copied" in header  # on main: no copied column
    workers = [ln for ln in lines if "│ worker" in ln and ln.rstrip("│ ").endswith(" *")]
    assert len(workers) == 2
    assert "* copied: the last COW scan is older than the process's last USS growth" in text
    fresh = CliRunner().invoke(cli, ["report", str(recorded)]).stdout
    assert "* copied" not in fresh  # current scans carry no marker
    # (the birth scans kept above are quick, page-level ones: the full scans type the pages)
    assert "summed over 2 workers" in fresh
    out = tmp_path / "stale.html"
    done = CliRunner().invoke(cli, ["report", str(path), "--format", "html", "-o", str(out)])
    assert done.exit_code == 0, done.output
    html = out.read_text()
    assert html.count('class="num stale"') == 2 and "is stale: USS grew" in html
