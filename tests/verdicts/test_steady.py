"""Steady-state figures exclude the shutdown (issue 16, deliverable 2).

GIVEN a server under `memscope run` whose 2 workers hold 8 MiB each and, when the server is
stopped, touch 40 MiB more for 0.4 s before exiting (a shutdown burst)
WHEN memscope is stopped with SIGTERM (forwarded to the server), and again from the data alone
(the recorded signal time removed, as for `attach`: the exit wave)
THEN `worker.uss.peak` sees the burst (> 40 MiB), `worker.uss.steady_peak` and
`worker.uss.steady_last` the 8 MiB steady state, and the text report shows both.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from memscope.cli import cli
from tests.check.helpers import MAIN, MiB

HERE = Path(__file__).resolve().parent


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("steady") / "burst.memscope"
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "run", "-q", "-i", "0.05", "--cow-interval", "0",
         "-o", str(path), "--", sys.executable, str(HERE / "burst_server.py")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        ready = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert all(e["event"] == "ready" for e in ready)

        def steady_sampled() -> bool:  # 2 s of full samples of both workers at steady USS
            if not path.exists():  # memscope creates it once the command runs
                return False
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                rows = conn.execute(
                    "SELECT process_id, MAX(t) - MIN(t) FROM samples s JOIN processes p"
                    " ON p.id = s.process_id WHERE p.role = 'worker' AND s.uss > ?"
                    " GROUP BY process_id", (7 * MiB,)).fetchall()
            return len(rows) == 2 and min(span for _, span in rows) > 2.0

        _wait(steady_sampled, 60, "steady samples of both workers")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    return path


def _check_json(path: Path, *rules: str) -> dict[str, tuple[float, str]]:
    args = ["check", str(path), "--format", "json"]
    for r in rules:
        args += ["-r", r]
    result = CliRunner().invoke(cli, args)
    doc = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    return {r["rule"]: (r["measured"], r["verdict"]) for r in doc["results"]}


RULES = ("worker.uss.peak <= 30MiB", "worker.uss.steady_peak <= 30MiB",
         "worker.uss.steady_last <= 30MiB")


def test_signalled_shutdown_is_excluded(recorded: Path) -> None:
    with sqlite3.connect(recorded) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'signalled_at'").fetchone()
    got = _check_json(recorded, *RULES)
    peak, verdict = got["worker.uss.peak <= 30MiB"]
    assert peak > 40 * MiB and verdict == "fail"  # the burst is in the raw peak
    for rule in RULES[1:]:
        value, verdict = got[rule]
        assert 7.5 * MiB < value < 12 * MiB and verdict == "pass", (rule, value)


def test_exit_wave_is_found_without_the_signal_time(recorded: Path, tmp_path: Path) -> None:
    copy = tmp_path / "attach-like.memscope"
    a, b = sqlite3.connect(recorded), sqlite3.connect(copy)
    a.backup(b)
    a.close()
    b.execute("DELETE FROM meta WHERE key = 'signalled_at'")
    b.commit()
    b.close()
    got = _check_json(copy, *RULES)
    for rule in RULES[1:]:
        value, verdict = got[rule]
        assert 7.5 * MiB < value < 12 * MiB and verdict == "pass", (rule, value)


def test_text_report_shows_steady_beside_raw(recorded: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(recorded)])
    assert result.exit_code == 0
    assert "Steady state: before the shutdown" in result.stdout
    assert "root signalled" in result.stdout
