"""`memscope run --check RULE [--repeat N] -- CMD`: record, then judge, in one CI line.

GIVEN the preload_list regression and its twin under every installed CPython
WHEN run with `--check 'worker.uss.peak <= 5MiB'`
THEN the regression exits 1 with the table naming the worker, the twin exits 0; bad rules
stop before the workload starts; --repeat judges the median and shows every run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.check.helpers import (
    FIXTURES,
    PRELOAD,
    TARGET_VERSIONS,
    events_in,
    memscope,
    python_for,
)

LIMIT = "worker.uss.peak <= 5MiB"


@pytest.mark.parametrize("version", TARGET_VERSIONS)
def test_regression_fails_the_job_twin_passes(version: str, tmp_path: Path) -> None:
    python = python_for(version)
    script = str(FIXTURES / "preload_list.py")
    junit = tmp_path / "memscope.xml"
    reg = memscope("run", "-q", "-i", "0.1", "-o", str(tmp_path / "reg.memscope"),
                   "--check", LIMIT, "--junit", str(junit), "--", python, script, *PRELOAD)
    twin = memscope("run", "-q", "-i", "0.1", "-o", str(tmp_path / "twin.memscope"),
                    "--check", LIMIT, "--", python, script, *PRELOAD, "--no-touch")
    assert reg.returncode == 1, reg.stderr
    assert twin.returncode == 0, twin.stderr
    workers = [e["pid"] for e in events_in(reg.stdout) if e["event"] == "forked"]
    assert any(f"worker pid {pid} " in reg.stdout for pid in workers)
    assert "FAIL" in reg.stdout
    assert "pass" in twin.stdout
    assert "<failure" in junit.read_text()


def test_bad_rule_stops_before_the_workload(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    done = memscope("run", "--check", "worker.uss.peak <= 5 megs", "--",
                    sys.executable, "-c", f"open({str(marker)!r}, 'w')")
    assert done.returncode == 2
    assert "unknown unit 'megs'" in done.stderr
    assert not marker.exists()
    done = memscope("run", "--repeat", "2", "--", sys.executable, "-c", "pass")
    assert done.returncode == 2
    assert "--repeat and --junit need --check" in done.stderr


def test_repeat_judges_the_median_and_shows_each_run(tmp_path: Path) -> None:
    out = tmp_path / "twin.memscope"
    done = memscope("run", "-q", "-i", "0.05", "-o", str(out), "--repeat", "3",
                    "--check", LIMIT, "--check", "tree.workers == 1", "--check-format", "json",
                    "--", sys.executable, str(FIXTURES / "preload_list.py"), "--workers", "1",
                    "--size", "1000", "--delay", "0.1", "--hold", "0.2", "--no-touch")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout[done.stdout.index('{\n'):])
    assert doc["recordings"] == [str(tmp_path / f"twin.run{i}.memscope") for i in (1, 2, 3)]
    for path in doc["recordings"]:
        assert Path(path).exists()
    uss = doc["results"][0]
    assert len(uss["runs"]) == 3
    assert uss["measured"] == sorted(uss["runs"])[1]
    assert doc["results"][1]["runs"] == [1, 1, 1]


def test_exit_status_with_duration_and_own_failure(tmp_path: Path) -> None:
    # The workload lets go of memscope's output pipes so that the test sees memscope's exit.
    sleeper = [sys.executable, "-c", "import os, time\nnull = os.open(os.devnull, os.O_WRONLY)\n"
               "os.dup2(null, 1); os.dup2(null, 2)\nif os.fork() == 0: time.sleep(2)\n"
               "time.sleep(30)"]
    done = memscope("run", "-q", "--duration", "0.6", "-o", str(tmp_path / "a.memscope"),
                    "--check", "tree.workers == 1", "--", *sleeper)
    assert done.returncode == 0, done.stdout + done.stderr  # stopped by --duration: not a failure
    failing = [sys.executable, "-c", "import os, sys, time\nif os.fork() == 0: time.sleep(0.3)\n"
               "else: os.wait(); sys.exit(3)"]
    done = memscope("run", "-q", "-o", str(tmp_path / "b.memscope"),
                    "--check", "tree.workers == 1", "--", *failing)
    assert done.returncode == 3  # rules hold, but the workload itself failed
    done = memscope("run", "-q", "-o", str(tmp_path / "c.memscope"),
                    "--check", "tree.workers == 5", "--", *failing)
    assert done.returncode == 1  # a broken rule decides
