"""Leak verdicts end to end on the leaky_worker fixture (real forked workers, every CPython):
`memscope run` then `memscope report --format json`. Truth comes from the fixture's own lines:
{"event": "truth"} names the leaky and stable workers, and the leaky worker's "progress" lines
give the rate it really leaked at while memscope took its snapshots. That rate is found within
20%, and the growing type or site is named; the stable sibling is `stable`."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import pythons
from tests.conftest import fixture, target_python
from tests.live_recording import query, stop_when

SNAPSHOTS = 4  # leak snapshots each worker needs before the run is stopped ...
SPAN_S = 6.0  # ... spread over at least this many seconds (the leak window's minimum is 5 s)


def _snapshots_taken(path: Path) -> bool:
    """Whether every worker has SNAPSHOTS leak snapshots over SPAN_S seconds so far."""
    rows = query(path, "SELECT COUNT(DISTINCT s.t), MAX(s.t) - MIN(s.t) FROM processes p"
                       " LEFT JOIN leak_snapshots s ON s.process_id = p.id"
                       " WHERE p.role = 'worker' GROUP BY p.id")
    return rows is not None and len(rows) == 2 and all(
        n >= SNAPSHOTS and (span or 0) >= SPAN_S for n, span in rows)


def record(
    memscope_bin: str, python: str, out: Path, extra: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    # The workers serve until every one has enough leak snapshots (an event: each snapshot's
    # pace follows its CPU cost, so how many fit in a fixed duration depends on the machine);
    # then SIGTERM to memscope is forwarded to the command. The leak window ends where the
    # shutdown window starts (analysis.steady: at the forwarded signal).
    proc = subprocess.Popen(
        [memscope_bin, "run", "-q", "-o", str(out), *extra, "--",
         python, fixture("leaky_worker"), "--workers", "2", "--leaky-workers", "1",
         "--duration", "600", "--delay", "0.3", "--hold", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stdout, err = stop_when(proc, lambda: _snapshots_taken(out), "leak snapshots")
    assert proc.returncode == 128 + signal.SIGTERM, err
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    truth = dict(next(e for e in events if e["event"] == "truth"))
    (leaky,) = truth["leaky_pids"]
    truth["leak_bytes_per_s"] = leaked_rate(events, leaky, snapshot_window(out, leaky))
    report = subprocess.run(
        [memscope_bin, "report", str(out), "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return truth, json.loads(report.stdout)


def snapshot_window(path: Path, pid: int) -> tuple[float, float]:
    """First and last leak snapshot times of the worker `pid`."""
    rows = query(path, "SELECT MIN(s.t), MAX(s.t) FROM leak_snapshots s JOIN processes p"
                       " ON s.process_id = p.id WHERE p.pid = ?", (pid,))
    assert rows, f"cannot read {path}"
    return float(rows[0][0]), float(rows[0][1])


def leaked_rate(events: list[dict[str, Any]], pid: int, window: tuple[float, float]) -> float:
    """The rate the worker really leaked at over `window` (least squares over its progress
    lines): a worker starved of CPU on a loaded machine falls behind the rate it was asked
    for, and memscope must measure what happened, not what was asked."""
    t0, t1 = window
    points = [(e["t"], e["leaked_bytes"]) for e in events
              if e["event"] == "progress" and e["pid"] == pid and t0 - 1 <= e["t"] <= t1 + 1]
    assert len(points) >= 3, f"too few progress lines in {window}: {points}"
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    return sum((t - mt) * (y - my) for t, y in points) / sum((t - mt) ** 2 for t, _ in points)


def by_pid(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["pid"]: p for p in doc["processes"]}


@pytest.mark.slow
@pytest.mark.parametrize("version", pythons())
def test_leaky_and_stable_workers(version: str, memscope_bin: str, tmp_path: Path) -> None:
    python = target_python(version)
    assert python is not None
    truth, doc = record(memscope_bin, python, tmp_path / "lw.memscope", ["--leak-census"])
    procs = by_pid(doc)
    (leaky,) = truth["leaky_pids"]
    (stable,) = truth["stable_pids"]
    leak = procs[leaky]["leak"]
    assert leak["verdict"] == "leak"
    assert leak["slope_bytes_per_s"] == pytest.approx(truth["leak_bytes_per_s"], rel=0.2)
    assert leak["confidence"] > 0.95
    # the out-of-process census names the leaking payload type
    assert leak["growing"] and leak["growing"][0]["type"] == "bytes"
    assert leak["growing"][0]["bytes_per_s"] == pytest.approx(truth["leak_bytes_per_s"], rel=0.2)
    assert procs[stable]["leak"]["verdict"] == "stable"
    assert leak["siblings"]["count"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.8", "3.12"])
def test_traced_workers_name_the_leaking_line(
    version: str, memscope_bin: str, tmp_path: Path
) -> None:
    python = target_python(version)
    if python is None:
        pytest.skip(f"no CPython {version}")
    truth, doc = record(
        memscope_bin, python, tmp_path / "lw.memscope", ["--trace-sites=4", "--trace-workers"]
    )
    with open(fixture("leaky_worker")) as f:
        lines = f.read().splitlines()
    payload_line = next(i for i, s in enumerate(lines, 1) if "return bytes(" in s)
    leak = by_pid(doc)[truth["leaky_pids"][0]]["leak"]
    assert leak["verdict"] == "leak"
    top = leak["growing"][0]
    assert top["site"].endswith(f"leaky_worker.py:{payload_line}")
    assert top["bytes_per_s"] == pytest.approx(truth["leak_bytes_per_s"], rel=0.2)
