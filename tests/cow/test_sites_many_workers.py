"""`memscope run --trace-sites` with more copied ints than one worker's page budget: every
worker's COW sites are topped by the preload line, from a page sample shared by the workers
(issue 11's done-when at a test's size; bench/bench_sites_runs.py runs the full 5M x 4)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from memscope.cow import sites as sites_mod
from tests.conftest import fixture, target_python
from tests.live_recording import stop_when

SIZE = 1_000_000  # 32-byte ints: ~7,800 copied pages, above sites.PAGE_BUDGET
WORKERS = 3


def _tops(path: Path) -> dict[int, str]:
    """Each worker's top site in its latest recorded COW sites."""
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute(
                "SELECT s.process_id, s.site FROM cow_sites s WHERE s.t = (SELECT MAX(t) FROM"
                " cow_sites WHERE process_id = s.process_id) ORDER BY s.bytes").fetchall()
    except sqlite3.Error:  # being written: try again
        return {}
    return dict(rows)  # the largest row of each worker comes last


@pytest.mark.slow
def test_every_worker_topped_by_the_preload_line(memscope_bin: str, tmp_path: Path) -> None:
    assert SIZE * 32 > sites_mod.PAGE_BUDGET * 4096  # the page sample is exercised
    python = target_python("3.12") or target_python("3.11")
    assert python is not None
    out = tmp_path / "many.memscope"
    with open(fixture("preload_list")) as f:
        line = next(i for i, s in enumerate(f, 1) if "return list(range(size))" in s)
    site = f"preload_list.py:{line}"
    # The workers hold until each has sites topped by the preload line (polled in the
    # recording: an event, not a fixed hold); then SIGTERM is forwarded to the command.
    proc = subprocess.Popen(
        [memscope_bin, "run", "-q", "-o", str(out), "--trace-sites=4", "--",
         python, fixture("preload_list"), "--workers", str(WORKERS), "--size", str(SIZE),
         "--hold", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _, err = stop_when(proc, lambda: sum(s.endswith(site) for s in _tops(out).values())
                       >= WORKERS, "sites topped by the preload line", timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    tops = _tops(out)
    assert len(tops) == WORKERS and all(s.endswith(site) for s in tops.values()), tops
    with sqlite3.connect(out) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    res = [r for r in json.loads(meta["cow_sites_resolution"]) if not r.get("error")]
    assert len(res) >= WORKERS
    # Each worker parsed a sample (about PAGE_BUDGET) of its ~7,800 copied pages, the same
    # pages as the others:
    # blocks looked up for one worker answered the next ones.
    budget_blocks = 1.2 * sites_mod.PAGE_BUDGET * 4096 // 32  # 32-byte ints per parsed page
    assert all(0 < r["page_rate"] < 1 and r["blocks"] <= budget_blocks for r in res), res
    assert sum(r["cached"] for r in res) > 0, res
    # The record times each step of the worker's sites (read while it lived, parse, lookups)
    # and the report prints it beside the sites table, with the share of pages parsed.
    assert all(r["read_seconds"] > 0 and r["parse_seconds"] > 0 and r["seconds"] > 0
               for r in res), res
    report = subprocess.run([memscope_bin, "report", str(out)], capture_output=True, text=True,
                            check=True).stdout
    text = " ".join(report.split())
    assert "Copied memory by allocation site" in text and site in text
    for r in res:
        assert (f"sites of {r['pid']}: {r['read_seconds'] + r['parse_seconds'] + r['seconds']:.2f}"
                f" s (read {r['read_seconds']:.2f}, parse {r['parse_seconds']:.2f}, lookups"
                f" {r['seconds']:.2f}); {r['page_rate']:.1%} of the copied pages parsed") in text
