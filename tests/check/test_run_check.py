"""`memscope run --check RULE [--repeat N] -- CMD`: record, then judge, in one CI line.

GIVEN the preload_list regression and its twin under every installed CPython
WHEN run with `--check 'worker.uss.peak <= 5MiB'`
THEN the regression exits 1 with the table naming the worker, the twin exits 0; bad rules
stop before the workload starts; --repeat judges the median and shows every run.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import urllib.request
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


def _load(port: int, count: int, requests: int, served: dict[int, int]) -> None:
    """Send `requests` GETs iterating `count` preloaded ints; retry until gunicorn is up."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(served.values()) < requests:
        try:
            url = f"http://127.0.0.1:{port}/?count={count}&sleep_ms=50"
            with urllib.request.urlopen(url, timeout=5) as response:
                pid = json.loads(response.read())["pid"]
                served[pid] = served.get(pid, 0) + 1
        except OSError:
            time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(("count", "code"), [(300_000, 1), (0, 0)])
def test_the_ci_one_liner_with_gunicorn(count: int, code: int, tmp_path: Path) -> None:
    """GIVEN `gunicorn --preload` whose app preloads 300k ints, and a load generator beside it
    WHEN requests iterate all of them (the regression: ~9 MiB of int pages copied per worker)
    or none (the twin)
    THEN the one line fails the job with a table, an annotation and a JUnit failure naming a
    worker that served requests, and passes for the twin."""
    pytest.importorskip("gunicorn")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    served: dict[int, int] = {}
    load = threading.Thread(target=_load, args=(port, count, 20, served))
    load.start()
    junit, summary = tmp_path / "memscope.xml", tmp_path / "summary.md"
    env = {**os.environ, "MEMSCOPE_FIXTURE_SIZE": "300000", "GITHUB_ACTIONS": "true",
           "GITHUB_STEP_SUMMARY": str(summary)}
    done = memscope("run", "-q", "-i", "0.1", "--duration", "4", "-o", str(tmp_path / "g.memscope"),
                    "--junit", str(junit), "--check", "worker.uss.peak <= 6MiB", "--",
                    sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
                    "-b", f"127.0.0.1:{port}", "--chdir", str(FIXTURES), "gunicorn_app:app",
                    env=env)
    load.join()
    assert sum(served.values()) == 20
    assert done.returncode == code, done.stdout + done.stderr
    annotations = [ln for ln in done.stdout.splitlines() if ln.startswith("::error ")]
    if code:
        assert any(f"worker pid {pid} " in done.stdout for pid in served)
        assert len(annotations) == 1
        assert "<failure" in junit.read_text()
        assert "❌ **FAIL**" in summary.read_text()
    else:
        assert annotations == []
        assert "<failure" not in junit.read_text()
        assert "✅ pass" in summary.read_text()
