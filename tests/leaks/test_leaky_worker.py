"""Leak verdicts end to end on the leaky_worker fixture (real forked workers, every CPython):
`memscope run` then `memscope report --format json`. Truth comes from the fixture's own
{"event": "truth"} line: the leaky worker's rate, within 20%, and its growing type or site are
named; the stable sibling is `stable`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.agent.conftest import pythons
from tests.conftest import fixture, target_python


def record(
    memscope_bin: str, python: str, out: Path, extra: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    # A worker lives duration + hold (+ ~0.3 s start). Its leak window ends at the shutdown
    # window (exit wave - 1 s margin, analysis.steady) and begins after a 1 s warm-up, so it
    # spans ~duration - 1.7 s against the 5 s minimum (min_span_s). With --duration 7 that was
    # 5.2-5.4 s measured on a quiet machine: one or two late ticks on a loaded one made it
    # `insufficient-data`. 9 s leaves ~2.3 s of slack.
    argv = [
        memscope_bin, "run", "-q", "-o", str(out), *extra, "--",
        python, fixture("leaky_worker"), "--workers", "2", "--leaky-workers", "1",
        "--duration", "9", "--delay", "0.3", "--hold", "0.3",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    truth = next(e for e in events if e["event"] == "truth")
    report = subprocess.run(
        [memscope_bin, "report", str(out), "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return truth, json.loads(report.stdout)


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
