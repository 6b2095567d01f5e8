"""`memscope diff` on real fixture runs: the fix's saving is named by type, with its bytes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from memscope.cow._model import QUICK_TARGET
from tests.conftest import fixture, target_python

pytestmark = pytest.mark.slow

MiB = 1 << 20
PYTHON = target_python("3.12") or target_python("3.11")
MEMSCOPE = shutil.which("memscope") or os.path.join(os.path.dirname(sys.executable), "memscope")


def memscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MEMSCOPE, *args], capture_output=True, text=True, timeout=180,
                          check=False)


def _scanned_after(path: str, since: float) -> int:
    """Workers with a *full* scan (types) at or after `since`: the quick page-level scan taken
    when copying settles has no types, and stopping on it lets the workers exit during the
    full scan that follows it (the by-type figures would then be the birth scan's)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT COUNT(DISTINCT process_id) FROM cow_scans"
                               " WHERE t >= ? AND target != ?", (since, QUICK_TARGET)).fetchone()
            return int(row[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def record(tmp: Path, name: str, *extra: str, label: str = "") -> str:
    """Record the fixture; once both workers did their work, SIGUSR1 asks memscope for a COW
    scan of every worker (on demand, outside the scheduler's CPU budget, so a loaded machine
    cannot postpone it), and the workers hold until that scan is in the recording."""
    if PYTHON is None:
        pytest.skip("no CPython 3.11/3.12 target")
    if name == "preload_numpy" and subprocess.run([PYTHON, "-c", "import numpy"],
                                                  check=False).returncode != 0:
        pytest.skip(f"{PYTHON} has no numpy (.ci/run installs it into each target)")
    out = str(tmp / f"{name}{label}.memscope")
    proc = subprocess.Popen([MEMSCOPE, "run", "-q", "-o", out, "--", PYTHON, fixture(name),
                             "--workers", "2", "--delay", "0.5", "--hold", "30", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    worked = 0
    for line in proc.stdout:
        if json.loads(line).get("event") == "worked":
            worked += 1
            if worked == 2:
                break
    assert worked == 2, proc.stderr.read() if proc.stderr else ""
    since = time.time()
    deadline = time.monotonic() + 25
    asked = 0.0
    while _scanned_after(out, since) < 2:
        assert time.monotonic() < deadline, "no on-demand scan of both workers within 25 s"
        if time.monotonic() - asked > 3:
            # again while waiting: a request finds a worker whose birth scan is still running
            # skipped (cow/schedule.py consumes the request), so ask until both are scanned
            os.kill(proc.pid, signal.SIGUSR1)
            asked = time.monotonic()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # memscope forwards it: the fixture stops its workers
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 128 + signal.SIGINT), err
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("diff")
    return {
        "list": record(tmp, "preload_list"),
        "numpy": record(tmp, "preload_numpy"),
        "gc": record(tmp, "gc_freeze"),
        "frozen": record(tmp, "gc_freeze", "--freeze", label="-frozen"),
    }


def diff_json(before: str, after: str, *extra: str) -> dict[str, Any]:
    done = memscope("diff", before, after, "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    schema = json.loads(resources.files("memscope.diff").joinpath(
        "schema/diff.schema.json").read_text())
    jsonschema.validate(doc, schema)
    return doc


def rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in doc["rows"]}


def test_numpy_instead_of_a_list_removes_the_int_copying(runs: dict[str, str]) -> None:
    doc = diff_json(runs["list"], runs["numpy"])
    ints = rows(doc)["copied.type.int"]
    # each of the 2 workers copied the ~58+ MiB of 2M int objects; numpy's buffer is never
    # written, so the saving is (almost) all of it
    assert ints["before"] >= 2 * 50 * MiB
    assert (ints["after"] or 0) < 2 * MiB
    assert ints["change"] <= -0.95 * ints["before"] and not ints["within_noise"]
    assert doc["headline"][0].startswith("copying of int fell by")
    total = rows(doc)["copied.total"]
    assert total["relative"] < -0.9
    for n in (1, 2):  # matched worker by worker
        w = rows(doc)[f"worker[{n}].copied.total"]
        assert w["before"] >= 50 * MiB and w["after"] < 5 * MiB
        assert rows(doc)[f"worker[{n}].uss.peak"]["change"] < -40 * MiB


def test_gc_freeze_removes_the_class_copying(runs: dict[str, str]) -> None:
    doc = diff_json(runs["gc"], runs["frozen"])
    saved = [r for r in doc["rows"] if r["scope"] == "tree"
             and r["metric"].startswith("copied.type.") and r["change"] < 0
             and not r["within_noise"]]
    top = min(saved, key=lambda r: r["change"])
    assert top["metric"] == "copied.type.__main__.Record"
    # 300k instances: their GC headers sit on ~10+ MiB of pages in each of the 2 workers
    assert top["before"] >= 2 * 8 * MiB and (top["after"] or 0) < 0.1 * top["before"]
    assert doc["headline"][0].startswith("copying of __main__.Record fell by")
    text = memscope("diff", runs["gc"], runs["frozen"]).stdout
    assert "copying of __main__.Record fell by" in text


def test_fail_if_uses_the_check_rule_language(runs: dict[str, str]) -> None:
    ok = memscope("diff", runs["list"], runs["numpy"], "--fail-if", "copied.total > -50%")
    assert ok.returncode == 0, ok.stderr
    assert "ok: copied.total > -50%" in ok.stdout
    worse = memscope("diff", runs["numpy"], runs["list"], "--fail-if", "copied.total > -50%",
                     "--fail-if", "tree.copied.type.int > 10MiB")
    assert worse.returncode == 1
    assert "FAIL: copied.total > -50%" in worse.stdout
    assert "FAIL: tree.copied.type.int > 10MiB" in worse.stdout


def test_a_recording_against_itself_is_all_noise(runs: dict[str, str]) -> None:
    doc = diff_json(runs["list"], runs["list"])
    assert doc["rows"] and all(r["within_noise"] and r["change"] == 0 for r in doc["rows"])


def test_repeats_widen_the_noise_band(runs: dict[str, str]) -> None:
    # two recordings of different workloads on one side: their spread is counted as noise
    doc = diff_json(runs["list"], runs["list"], "--before-also", runs["numpy"])
    ints = rows(doc)["copied.type.int"]
    assert ints["before_spread"] >= 50 * MiB and ints["within_noise"]


@pytest.mark.parametrize("fmt", ["markdown", "html", "text"])
def test_other_formats_name_the_saving(runs: dict[str, str], fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"diff.{fmt}"
    done = memscope("diff", runs["list"], runs["numpy"], "--format", fmt, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "copying of int fell by" in out.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--fail-if", "copied.total >> 5%"], "unknown operator"),
    (["--fail-if", "copied.nothing > 5%"], "no figure 'copied.nothing'"),
    (["--fail-if", "copied.total > 5 parsecs"], "unknown unit"),
])
def test_bad_rules_are_one_line_errors(runs: dict[str, str], args: list[str], message: str) -> None:
    done = memscope("diff", runs["list"], runs["numpy"], *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2


def test_an_old_recording_diffs_against_a_new_one(runs: dict[str, str]) -> None:
    # GIVEN a schema-2 recording of preload_list (300k ints; scan detail as cow_by_* rows) and
    # this memscope's recording of it (2M ints; detail in cow_details)
    old = str(Path(__file__).parents[1] / "data" / "recordings"
              / "schema2-preload_list.memscope")
    conn = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
    # each worker's peak full scan (most copied, earliest of equals) and its int bytes, by SQL
    expected = 0
    for (process_id,) in conn.execute("SELECT id FROM processes WHERE role = 'worker'"):
        peak = conn.execute("SELECT id FROM cow_scans WHERE process_id = ? AND target != ?"
                            " ORDER BY copied_bytes DESC, t, id LIMIT 1",
                            (process_id, QUICK_TARGET)).fetchone()
        row = conn.execute("SELECT bytes FROM cow_by_type WHERE scan_id = ? AND type = 'int'",
                           (peak[0],)).fetchone()
        expected += row[0]
    conn.close()
    new = sqlite3.connect(f"file:{runs['list']}?mode=ro", uri=True)
    assert new.execute("PRAGMA user_version").fetchone()[0] == 3
    assert new.execute("SELECT COUNT(*) FROM cow_details").fetchone()[0] == \
        new.execute("SELECT COUNT(*) FROM cow_scans").fetchone()[0]
    new.close()
    # WHEN they are compared THEN both sides' int copying is read from their own form
    ints = rows(diff_json(old, runs["list"]))["copied.type.int"]
    assert ints["before"] == expected and expected >= 2 * 8 * MiB
    assert ints["after"] >= 2 * 50 * MiB
