"""CSV and mprof exports round-trip through the readers people use on them.

GIVEN a real recording of preload_list (a root and 3 forked workers)
WHEN it is exported with `memscope report --format csv|mprof`
THEN pandas-style CSV readers get one row per process per sample with the recorded bytes, and
memory_profiler's own reader (mprof.read_mprofile_file) loads the .dat with MEM for the root
and one CHLD series per worker, and `mprof plot` draws it.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import mprof  # memory_profiler's CLI module (test extra)
import pytest

from memscope.recording import open_recording
from memscope.report import REPORTERS
from memscope.report.csv_report import CSV_COLUMNS, spreadsheet_safe
from tests.report.recordings import memscope, record_preload_list

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> str:
    return record_preload_list(str(tmp_path_factory.mktemp("exp") / "pl.memscope"), workers=3)


def export(path: str, fmt: str, out: Path) -> Path:
    proc = memscope("report", path, "--format", fmt, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_every_format_is_registered_by_name() -> None:
    assert {"html", "csv", "mprof", "text", "json"} <= set(REPORTERS)


def test_csv_is_long_format_with_recorded_values(recorded: str, tmp_path: Path) -> None:
    out = export(recorded, "csv", tmp_path / "r.csv")
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rec = open_recording(recorded)
    try:
        samples = list(rec.samples())
        procs = {p.id: p for p in rec.processes}
    finally:
        rec.close()
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == len(samples)
    by_key = {(int(r["process_id"]), float(r["epoch"])): r for r in rows}
    for s in samples:
        row = by_key[(s.process_id, round(s.t, 6))]
        assert int(row["pid"]) == procs[s.process_id].pid
        assert row["role"] == procs[s.process_id].role
        assert int(row["rss"]) == s["rss"]
        if s["pss"] is None:
            assert row["pss"] == row["uss"] == row["shared"] == ""
        else:
            assert int(row["uss"]) == s["uss"]
            assert int(row["shared"]) == (s["shared_clean"] or 0) + (s["shared_dirty"] or 0)
    assert {r["role"] for r in rows} == {"root", "worker"}
    assert len({r["process_id"] for r in rows}) == 4


def test_csv_defuses_spreadsheet_formulas() -> None:
    assert spreadsheet_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert spreadsheet_safe("python app.py") == "python app.py"


def test_mprof_dat_loads_in_memory_profiler(recorded: str, tmp_path: Path) -> None:
    out = export(recorded, "mprof", tmp_path / "r.dat")
    data = mprof.read_mprofile_file(str(out))
    rec = open_recording(recorded)
    try:
        root = next(p for p in rec.processes if p.role == "root")
        workers = [p for p in rec.processes if p.role == "worker"]
        root_rss = [s["rss"] for s in rec.samples(root.id)]
        worker_rss = {str(w.pid): [s["rss"] for s in rec.samples(w.id)] for w in workers}
    finally:
        rec.close()
    assert data["cmd_line"].startswith(os.path.basename(sys.executable)) or \
        data["cmd_line"].startswith(sys.executable)
    assert len(data["mem_usage"]) == len(root_rss)
    assert data["mem_usage"] == pytest.approx([r / MIB for r in root_rss], abs=1e-5)
    assert data["timestamp"] == sorted(data["timestamp"])
    assert set(data["children"]) == set(worker_rss)
    for pid, series in data["children"].items():
        assert [m for m, _ in series] == pytest.approx([r / MIB for r in worker_rss[pid]],
                                                       abs=1e-5)
    # The workers copied the preloaded ints: their RSS at the end is above 15 MiB.
    assert all(series[-1][0] > 15 for series in data["children"].values())


def test_mprof_plot_draws_it(recorded: str, tmp_path: Path) -> None:
    dat = export(recorded, "mprof", tmp_path / "r.dat")
    png = tmp_path / "plot.png"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "mprof", "plot", str(dat), "-o", str(png)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
