"""`memscope run --trace-sites` on the preload_list fixture: the report names the line that
allocated the memory the workers copied (every CPython), per worker and summed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.agent.conftest import pythons
from tests.conftest import fixture, target_python

SIZE = 300_000


@pytest.mark.slow
@pytest.mark.parametrize("version", pythons())
def test_report_names_the_allocating_line(version: str, memscope_bin: str, tmp_path: Path) -> None:
    python = target_python(version)
    assert python is not None
    out = tmp_path / "pl.memscope"
    run = subprocess.run(
        [memscope_bin, "run", "-q", "-o", str(out), "--trace-sites=4",
         "--cow-interval", "0", "--",
         python, fixture("preload_list"), "--workers", "2", "--size", str(SIZE),
         "--delay", "0.3", "--hold", "6"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads(subprocess.run(
        [memscope_bin, "report", str(out), "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout)
    with open(fixture("preload_list")) as f:
        line = next(i for i, s in enumerate(f, 1) if "return list(range(size))" in s)
    site = f"preload_list.py:{line}"
    workers = [p for p in doc["processes"] if p["role"] == "worker"]
    assert len(workers) == 2
    for w in workers:
        traced = [s for s in w["cow_sites"]["sites"] if s["site"] != "<untraced>"]
        assert traced[0]["site"].endswith(site)
        assert traced[0]["bytes"] >= 0.95 * SIZE * 32  # every int's 32-byte block
        assert traced[0]["traceback"][0][1] == line
    total = next(s for s in doc["cow_sites"] if s["site"] != "<untraced>")
    assert total["site"].endswith(site) and total["workers"] == 2
    assert total["bytes"] == sum(
        next(s["bytes"] for s in w["cow_sites"]["sites"] if s["site"] == total["site"])
        for w in workers
    )
