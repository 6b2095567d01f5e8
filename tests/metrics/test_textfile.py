"""`memscope report REC --format prometheus -o FILE.prom`: the live series, from a recording.

GIVEN a real tree recorded with the exporter hooked in, whose first worker was replaced
WHEN the recording is reported in the prometheus format to a .prom file
THEN the file holds exactly the series the live endpoint showed at the end, with the same
values (each slot's last full sample), passes `promtool check metrics`, and is written
atomically with an ordinary file mode.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from memscope.analysis.summary import build_summary
from memscope.cli import cli
from memscope.recording import open_recording

from ._support import Forker, Live, Series, by_slot, parse

MEMORY = ("uss", "pss", "rss", "swap")


@dataclass
class Recorded:
    path: Path
    live_end: Series  # the live endpoint's last scrape
    workers: tuple[int, int, int]  # first (replaced), second, third (took slot 0)
    prom: Path
    text: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    tmp = tmp_path_factory.mktemp("textfile")
    tree = Forker()
    live = Live(tree.pid, tmp / "run.memscope")
    try:
        first, second = tree.fork(2), tree.fork(6)
        live.tick()
        tree.kill(first)
        live.tick()
        third = tree.fork(4)
        live.tick()
        _, end = live.tick()
    finally:
        live.close()
        tree.close()
    prom = tmp / "memscope.prom"
    prom.write_text("# memscope textfile of an earlier run: stale\n")  # memscope replaces its own
    old_umask = os.umask(0o022)
    try:
        result = CliRunner().invoke(
            cli, ["report", str(tmp / "run.memscope"), "--format", "prometheus", "-o", str(prom)]
        )
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    return Recorded(tmp / "run.memscope", end, (first, second, third), prom, prom.read_text())


def _process_series(series: Series) -> Series:
    return {k: v for k, v in series.items() if k[0].startswith("memscope_process_")}


def test_textfile_holds_the_series_the_endpoint_showed_last(recorded: Recorded) -> None:
    in_file = _process_series(parse(recorded.text))
    at_end = _process_series(recorded.live_end)
    assert set(in_file) == set(at_end)
    for key, value in at_end.items():
        assert in_file[key] == value, key


def test_slots_are_replayed_from_births_and_exits(recorded: Recorded) -> None:
    first, second, third = recorded.workers
    series = parse(recorded.text)
    assert by_slot(series, "memscope_process_pid", "worker") == {0: third, 1: second}
    assert first not in by_slot(series, "memscope_process_pid", "worker").values()
    assert series[("memscope_tree_workers", ())] == 2
    assert series[("memscope_tree_processes", ())] == 3


def test_values_are_each_slots_last_full_sample(recorded: Recorded) -> None:
    rec = open_recording(str(recorded.path))
    try:
        summary = build_summary(rec)
    finally:
        rec.close()
    series = parse(recorded.text)
    for slot, pid in by_slot(series, "memscope_process_pid", "worker").items():
        process = next(p for p in summary.processes if p.pid == pid)
        for key in MEMORY:
            exported = by_slot(series, f"memscope_process_{key}_bytes", "worker")[slot]
            assert exported == getattr(process.last, key)
    assert series[("memscope_tree_peak_pss_bytes", ())] == summary.totals.peak_pss
    pss = [v for (name, _), v in series.items() if name == "memscope_process_pss_bytes"]
    assert series[("memscope_tree_pss_bytes", ())] == sum(pss)
    assert series[("memscope_last_tick_timestamp_seconds", ())] == summary.ended_at


def test_written_atomically_with_a_readable_mode(recorded: Recorded) -> None:
    assert recorded.text.startswith("# HELP memscope_info")
    assert "stale" not in recorded.text
    assert stat.S_IMODE(recorded.prom.stat().st_mode) == 0o644
    leftovers = [p.name for p in recorded.prom.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_promtool_accepts_the_textfile(recorded: Recorded) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package: prometheus)")
    done = subprocess.run([promtool, "check", "metrics"], input=recorded.text, text=True,
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
