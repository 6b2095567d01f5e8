"""`memscope run --trace-sites` on the preload_list fixture: the report names the line that
allocated the memory the workers copied (every CPython), per worker and summed."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.agent.conftest import pythons
from tests.conftest import fixture, target_python
from tests.live_recording import query, stop_when

SIZE = 300_000


def _workers_resolved(path: Path, site: str) -> int:
    """Workers whose recorded COW sites put >= 95 % of the ints' blocks on `site`."""
    rows = query(path, "SELECT COUNT(DISTINCT process_id) FROM cow_sites WHERE site LIKE ?"
                       " AND bytes >= ?", (f"%{site}", int(0.95 * SIZE * 32)))
    return int(rows[0][0]) if rows else 0


@pytest.mark.slow
@pytest.mark.parametrize("version", pythons())
def test_report_names_the_allocating_line(version: str, memscope_bin: str, tmp_path: Path) -> None:
    python = target_python(version)
    assert python is not None
    out = tmp_path / "pl.memscope"
    with open(fixture("preload_list")) as f:
        line = next(i for i, s in enumerate(f, 1) if "return list(range(size))" in s)
    site = f"preload_list.py:{line}"
    # The workers hold until both have their copied ints resolved to the preload line (an
    # event, not a fixed hold: resolution takes seconds on a loaded machine); then SIGTERM to
    # memscope is forwarded to the command, which ends with the status of that signal.
    proc = subprocess.Popen(
        [memscope_bin, "run", "-q", "-o", str(out), "--trace-sites=4",
         "--cow-interval", "0", "--",
         python, fixture("preload_list"), "--workers", "2", "--size", str(SIZE),
         "--delay", "0.3", "--hold", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _, err = stop_when(proc, lambda: _workers_resolved(out, site) >= 2, "resolved sites")
    assert proc.returncode == 128 + signal.SIGTERM, err
    doc = json.loads(subprocess.run(
        [memscope_bin, "report", str(out), "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout)
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
