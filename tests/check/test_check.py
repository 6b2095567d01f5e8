"""`memscope check` and `memscope baseline` against real recordings of the fixtures.

GIVEN preload_list recorded with workers that iterate the preloaded list (the regression: each
worker copies the int pages, ~9 MiB at 300k ints) and its twin that does not, and a
leaky_worker recording where one of two workers leaks
WHEN rules are checked
THEN the regression breaks the limit its twin holds, the worst worker is named, and the exit
codes, JSON, markdown, JUnit and GitHub outputs say so.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from lxml import etree

from memscope.analysis.summary import build_summary
from memscope.check import METRICS, SELECTORS, load_sources
from memscope.cli import cli
from memscope.recording import open_recording
from tests.check.helpers import DATA, MiB, Recorded

LIMIT = "worker.uss.peak <= 5MiB"  # between the twin (<1 MiB) and the regression (~9.5 MiB)


def check(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["check", *args], env=env)


def check_json(*args: str) -> tuple[int, dict[str, Any]]:
    result = check(*args, "--format", "json")
    return result.exit_code, json.loads(result.stdout[: result.stdout.rindex("}") + 1])


def summary_of(rec: Recorded) -> Any:
    r = open_recording(rec.path)
    try:
        return build_summary(r)
    finally:
        r.close()


def test_regression_is_caught_and_twin_passes(recordings: dict[str, Recorded]) -> None:
    reg, twin = recordings["regression"], recordings["twin"]
    broken = check(reg.path, "--rule", LIMIT)
    held = check(twin.path, "--rule", LIMIT)
    assert (broken.exit_code, held.exit_code) == (1, 0), broken.output + held.output
    worst = max(summary_of(reg).workers, key=lambda p: p.peak.uss)
    assert worst.peak.uss > 8 * MiB  # ~9.2 MiB of int pages copied
    assert f"worker pid {worst.pid}" in broken.stdout
    assert "FAIL" in broken.stdout
    assert max(p.peak.uss for p in summary_of(twin).workers) < 2 * MiB


def test_every_selector_and_metric_matches_the_summary(recordings: dict[str, Recorded]) -> None:
    rec = recordings["regression"]
    s = summary_of(rec)
    root = next(p for p in s.processes if p.role == "root")
    expected = {
        "tree.pss.peak": s.totals.peak_pss, "tree.rss.peak": s.totals.peak_rss,
        "tree.workers": len(s.workers), "tree.processes": len(s.processes),
        "root.uss.peak": root.peak.uss, "root.rss.peak": root.peak.rss,
        "root.uss.last": root.last.uss, "root.uss.growth": root.uss_growth,
        "worker.uss.peak": max(p.peak.uss for p in s.workers),
        "worker.pss.peak": max(p.peak.pss for p in s.workers),
        "worker.swap.peak": max(p.peak.swap for p in s.workers),
        "worker.uss.growth": max(p.uss_growth for p in s.workers),
        "process.uss.peak": max(p.peak.uss for p in s.processes),
        "process.rss.peak": max(p.peak.rss for p in s.processes),
    }
    assert s.totals.peak_pss > 0
    assert len(s.workers) == 2
    limits = {"tree.workers": "99", "tree.processes": "99"}
    rules = [f"{key} <= {limits.get(key, '1TiB')}" for key in expected]
    code, doc = check_json(rec.path, *(a for r in rules for a in ("-r", r)))
    measured = {r["rule"].split()[0]: r["measured"] for r in doc["results"]}
    assert code == 0
    assert measured == expected
    assert {k.split(".")[0] for k in measured} == set(SELECTORS)


def test_lower_bound_judges_the_smallest_worker(recordings: dict[str, Recorded]) -> None:
    rec = recordings["leaky"]
    stable = rec.of("truth")[0]["stable_pids"][0]
    code, doc = check_json(rec.path, "-r", "worker.uss.growth >= 2MiB")
    assert code == 1
    assert f"pid {stable} " in doc["results"][0]["process"]


def test_leaky_worker_is_named_and_its_growth_measured(recordings: dict[str, Recorded]) -> None:
    rec = recordings["leaky"]
    truth = rec.of("truth")[0]
    leaked = truth["leak_bytes_per_s"] * truth["duration"]  # 2.5 MiB in the leaky worker
    code, doc = check_json(rec.path, "-r", "worker.uss.growth <= 1MiB")
    (result,) = doc["results"]
    assert code == 1
    assert result["verdict"] == "fail"
    assert f"pid {truth['leaky_pids'][0]} " in result["process"]
    assert result["measured"] == pytest.approx(leaked, rel=0.3)
    assert check(rec.path, "-r", "worker.uss.growth <= 8MiB").exit_code == 0


@pytest.mark.parametrize(("rule", "names"), [
    ("worker.cow.copied <= 8MiB", "recording lacks metric worker.cow.copied"),
    ("tree.cow.copied_ratio <= 10%", "recording lacks metric tree.cow.copied_ratio"),
    ("process.leak.slope <= 1MiB/min", "recording lacks metric process.leak.slope"),
])
def test_missing_metrics_exit_2_never_pass(recordings: dict[str, Recorded], rule: str,
                                           names: str) -> None:
    result = check(recordings["twin"].path, "-r", rule, "-r", LIMIT)
    assert result.exit_code == 2
    assert names in result.stderr
    assert "hint:" in result.stderr
    assert "ERROR" in result.stdout  # the table still shows every rule


def test_usage_and_input_errors_exit_2(recordings: dict[str, Recorded], tmp_path: Path) -> None:
    twin = recordings["twin"].path
    for args, names in [
        ([twin, "-r", "worker.uss.peak <= 5 mib"], "unknown unit 'mib'"),
        ([twin, "-r", "workr.uss.peak <= 5MiB"], "unknown selector 'workr'"),
        ([twin, "-r", "worker.uss.peak <= baseline"], "pass --baseline"),
        ([twin, "--tolerance", "10"], "needs a unit"),
        ([str(tmp_path / "nope.memscope"), "-r", LIMIT], "no such recording"),
        ([twin, "--baseline", str(tmp_path / "nope.json")], "no such baseline"),
    ]:
        result = check(*args)
        assert result.exit_code == 2, (args, result.output)
        assert names in result.stderr
        assert "Traceback" not in result.output


def test_no_rules_is_a_usage_error(recordings: dict[str, Recorded], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = check(recordings["twin"].path)
    assert result.exit_code == 2
    assert "no rules to check" in result.stderr


def test_rules_from_pyproject(recordings: dict[str, Recorded], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("pyproject.toml").write_text(f'[tool.memscope.check]\nrules = ["{LIMIT}"]\n')
    assert check(recordings["regression"].path).exit_code == 1
    assert check(recordings["twin"].path).exit_code == 0
    # --rule replaces the configured rules
    assert check(recordings["regression"].path, "-r", "worker.uss.peak <= 64MiB").exit_code == 0


def test_baseline_save_and_tolerance_arithmetic(recordings: dict[str, Recorded],
                                                tmp_path: Path) -> None:
    twin, reg = recordings["twin"].path, recordings["regression"].path
    base = tmp_path / "base.json"
    saved = CliRunner().invoke(cli, ["baseline", "save", twin, "-o", str(base)])
    assert saved.exit_code == 0, saved.output
    stored = json.loads(base.read_text())["metrics"]
    (source,) = load_sources([twin])
    worker_peak = max(p.peak.uss for p in source.summary.workers)
    assert stored["worker.uss.peak"]["value"] == worker_peak
    assert set(stored) >= {"tree.pss.peak", "worker.uss.peak", "root.uss.peak", "tree.workers"}
    assert not any(k.startswith(("tree.cow", "worker.leak")) for k in stored)  # not recorded

    # Implicit rules: every peak the baseline holds <= baseline + tolerance.
    code, doc = check_json(twin, "--baseline", str(base), "--tolerance", "7%")
    assert code == 0
    implicit = {r["rule"]: r for r in doc["results"]}
    peak = implicit["worker.uss.peak <= baseline + 7%"]
    assert peak["limit"] == pytest.approx(worker_peak * 1.07)
    assert peak["measured"] == worker_peak
    code, doc = check_json(reg, "--baseline", str(base))
    assert code == 1
    broken = {r["rule"] for r in doc["results"] if r["verdict"] == "fail"}
    assert "worker.uss.peak <= baseline + 10%" in broken

    # Explicit baseline rules: relative and absolute slack, and a shrink requirement.
    rules = ["worker.uss.peak <= baseline - 5%", "worker.uss.peak <= baseline + 1MiB",
             "worker.uss.peak <= baseline"]
    code, doc = check_json(twin, "--baseline", str(base), *(a for r in rules for a in ("-r", r)))
    limits = {r["rule"]: (r["limit"], r["verdict"]) for r in doc["results"]}
    assert limits[rules[0]] == (pytest.approx(worker_peak * 0.95), "fail")
    assert limits[rules[1]] == (worker_peak + MiB, "pass")
    assert limits[rules[2]] == (worker_peak, "pass")
    assert code == 1
    # an explicit baseline rule on a key replaces that key's implicit rule
    assert sum(r["rule"].startswith("worker.uss.peak") for r in doc["results"]) == 3


def test_median_of_several_recordings(recordings: dict[str, Recorded]) -> None:
    paths = [recordings[k].path for k in ("twin", "regression", "regression")]
    code, doc = check_json(*paths, "-r", LIMIT)
    (result,) = doc["results"]
    assert len(result["runs"]) == 3
    assert result["measured"] == sorted(result["runs"])[1]
    assert code == 1
    assert "median of" in check(*paths, "-r", LIMIT).stdout


def test_markdown_table(recordings: dict[str, Recorded]) -> None:
    result = check(recordings["regression"].path, "-r", LIMIT, "-r", "tree.workers == 2",
                   "--format", "markdown")
    lines = result.stdout.splitlines()
    assert "| rule | measured | limit | verdict | process |" in lines
    assert any(ln.startswith("| `worker.uss.peak <= 5MiB` |") and "FAIL" in ln for ln in lines)
    assert any(ln.startswith("| `tree.workers == 2` | 2 | 2 | ✅ pass") for ln in lines)


def test_junit_validates_and_marks_failures(recordings: dict[str, Recorded],
                                            tmp_path: Path) -> None:
    schema = etree.XMLSchema(etree.parse(str(DATA / "junit.xsd")))
    junit = tmp_path / "memscope.xml"
    result = check(recordings["regression"].path, "-r", LIMIT, "-r", "tree.workers == 2",
                   "--junit", str(junit))
    assert result.exit_code == 1
    doc = etree.parse(str(junit))
    schema.assertValid(doc)
    suite = doc.getroot()[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases[LIMIT].find("failure") is not None
    assert "worker pid" in cases[LIMIT].find("failure").get("message")
    assert cases["tree.workers == 2"].find("failure") is None

    errored = tmp_path / "errored.xml"
    check(recordings["twin"].path, "-r", "worker.cow.copied <= 1MiB", "--junit", str(errored))
    doc = etree.parse(str(errored))
    schema.assertValid(doc)
    assert doc.getroot()[0].get("errors") == "1"
    assert next(doc.getroot().iter("error")).get("type") == "MissingMetric"


def test_github_annotations_and_step_summary(recordings: dict[str, Recorded],
                                             tmp_path: Path) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    result = check(recordings["regression"].path, "-r", LIMIT, "-r", "tree.workers == 2",
                   env=env)
    assert result.exit_code == 1
    errors = [ln for ln in result.stdout.splitlines() if ln.startswith("::error ")]
    assert len(errors) == 1
    assert errors[0].startswith("::error title=memscope%3A worker.uss.peak <= 5MiB::")
    assert "broken: measured" in errors[0]
    assert "worker pid" in errors[0]
    text = summary.read_text()
    assert text.startswith("earlier step\n### memscope check")
    assert "❌ **FAIL**" in text
    assert "✅ pass" in text
    quiet = check(recordings["regression"].path, "-r", LIMIT, env={"GITHUB_ACTIONS": ""})
    assert "::error" not in quiet.stdout


def test_cow_metrics_read_from_cow_scans_table(recordings: dict[str, Recorded],
                                               tmp_path: Path) -> None:
    """Contract with the COW scanner: latest scan per process in `cow_scans` (its DDL)."""
    path = tmp_path / "with-cow.memscope"
    src = sqlite3.connect(recordings["regression"].path)
    dst = sqlite3.connect(path)
    src.backup(dst)
    src.close()
    workers = [r[0] for r in dst.execute("SELECT id FROM processes WHERE role = 'worker'")]
    dst.execute("CREATE TABLE IF NOT EXISTS cow_scans (id INTEGER PRIMARY KEY,"
                " process_id INTEGER NOT NULL,"
                " pid INTEGER NOT NULL, parent_pid INTEGER NOT NULL, t REAL NOT NULL,"
                " mode TEXT NOT NULL, inherited_bytes INTEGER NOT NULL,"
                " copied_bytes INTEGER NOT NULL, shared_bytes INTEGER NOT NULL,"
                " new_private_bytes INTEGER NOT NULL, swapped_bytes INTEGER NOT NULL,"
                " target TEXT NOT NULL, duration_s REAL NOT NULL)")
    scans = [  # (process, t, inherited, copied): the later scan of each process counts
        (workers[0], 1.0, 40 * MiB, 1 * MiB), (workers[0], 2.0, 40 * MiB, 9 * MiB),
        (workers[1], 2.0, 40 * MiB, 3 * MiB),
    ]
    dst.executemany("INSERT INTO cow_scans (process_id, pid, parent_pid, t, mode,"
                    " inherited_bytes, copied_bytes, shared_bytes, new_private_bytes,"
                    " swapped_bytes, target, duration_s) VALUES (?, 0, 0, ?, 'pfn', ?, ?,"
                    " 0, 0, 0, '', 0)", scans)
    dst.commit()
    dst.close()
    code, doc = check_json(str(path), "-r", "worker.cow.copied <= 8MiB",
                           "-r", "tree.cow.copied_ratio <= 10%", "-r", "tree.cow.copied <= 1GiB")
    got = {r["rule"]: (r["measured"], r["verdict"]) for r in doc["results"]}
    assert got["worker.cow.copied <= 8MiB"] == (9 * MiB, "fail")
    assert got["tree.cow.copied_ratio <= 10%"] == (pytest.approx(12 / 80), "fail")
    assert got["tree.cow.copied <= 1GiB"] == (12 * MiB, "pass")
    assert code == 1


def test_every_selector_metric_and_unit_is_documented() -> None:
    from memscope.quantity import BYTE_UNITS, TIME_UNITS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "ci.md").read_text()
    for name in METRICS:
        assert f"`{name}`" in doc
    for selector in SELECTORS:
        assert f"| `{selector}` |" in doc
    for unit in [*BYTE_UNITS, *TIME_UNITS]:
        assert unit in doc
