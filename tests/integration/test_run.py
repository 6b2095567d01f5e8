"""`memscope run` on real forked workloads: measured memory, exit codes, signals, SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from memscope.analysis.summary import build_summary
from memscope.recording import open_recording
from tests.conftest import fixture

MiB = 1024 * 1024


def run_memscope(memscope_bin: str, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([memscope_bin, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_preload_list_workers_copy_what_they_touch(memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    # GIVEN a parent that preloads 2M ints and forks 2 workers which iterate over them
    path = os.path.join(str(tmp_path), "preload.memscope")
    done = run_memscope(memscope_bin, [
        "run", "-q", "-o", path, "-i", "0.1", "--", sys.executable, fixture("preload_list"),
        "--workers", "2", "--size", "2000000", "--delay", "0.5", "--hold", "1.5"])
    assert done.returncode == 0, done.stderr
    summary = build_summary(open_recording(path))
    workers = summary.workers
    assert len(workers) == 2
    for w in workers:
        # THEN each worker's USS rose by at least 50 MiB although it allocated nothing
        assert w.uss_growth is not None and w.uss_growth >= 50 * MiB, w
        assert w.first_uss is not None and w.first_uss < 10 * MiB
    # AND summed RSS overstates the true footprint
    assert summary.totals.peak_pss < summary.totals.peak_rss
    root = next(p for p in summary.processes if p.role == "root")
    assert root.exit_code == 0
    assert summary.exit_code == 0
    assert summary.sampler.ticks >= 15
    assert 0.08 < summary.sampler.mean_interval_s < 0.15


@pytest.mark.parametrize(
    ("code", "expected"),
    [("import sys; sys.exit(3)", 3),
     ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + 9),
     ("pass", 0)],
)
def test_exit_status_is_the_commands(memscope_bin: str, tmp_path: os.PathLike[str], code: str, expected: int) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    done = run_memscope(memscope_bin, ["run", "-q", "-o", path, "--", sys.executable, "-c", code])
    assert done.returncode == expected, done.stderr
    assert open_recording(path).meta["exit_code"] == expected


_TRAP = """
import signal, sys, time
def handler(signum, frame):
    sys.exit(40 + signum)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, handler)
print("ready", flush=True)
time.sleep(30)
sys.exit(99)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_are_forwarded(memscope_bin: str, tmp_path: os.PathLike[str], signum: int) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    proc = subprocess.Popen([memscope_bin, "run", "-q", "-o", path, "--", sys.executable, "-c", _TRAP],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    # THEN the command saw the signal exactly as sent, and its status is memscope's
    assert proc.returncode == 40 + signum, err
    assert open_recording(path).meta["exit_code"] == 40 + signum


def test_duration_ends_the_command(memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    t0 = time.monotonic()
    done = run_memscope(memscope_bin, ["run", "-q", "-o", path, "--duration", "1", "--",
                                       sys.executable, "-c", "import time; time.sleep(60)"])
    assert time.monotonic() - t0 < 15
    assert done.returncode == 128 + signal.SIGTERM


@pytest.mark.slow
def test_sigkill_leaves_a_readable_recording(memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "killed.memscope")
    proc = subprocess.Popen([memscope_bin, "run", "-q", "-o", path, "-i", "0.1", "--",
                             sys.executable, "-c", "import time; print('up', flush=True); time.sleep(20)"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    time.sleep(2.5)
    killed_at = time.time()
    proc.kill()
    proc.wait()
    try:
        rec = open_recording(path)
        last = max(s.t for s in rec.samples())
        # THEN every sample up to about one second before the kill is there
        assert last >= killed_at - 1.0
        assert len(list(rec.samples())) >= 15
        summary = build_summary(rec)
        assert summary.processes[0].role == "root"
    finally:
        subprocess.run(["pkill", "-f", "time.sleep\\(20\\)"], check=False)


def test_demo_records_the_preload_fixture(memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "demo.memscope")
    done = run_memscope(memscope_bin, ["demo", "--workers", "2", "--size", "300000", "-o", path])
    assert done.returncode == 0, done.stderr
    assert "Tree totals" in done.stdout
    summary = build_summary(open_recording(path))
    assert len(summary.workers) == 2
    # 300k ints are ~9 MiB of pymalloc pages that each iterating worker copies
    assert all((w.uss_growth or 0) > 6 * MiB for w in summary.workers)


def _count(path: str, sql: str) -> int:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute(sql).fetchone()[0] or 0)
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet, or the schema is still being written
        return 0


@pytest.mark.slow
def test_sigkill_after_chunking_loses_at_most_a_second(memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    # GIVEN memscope sampling fast enough that compact chunks and plain rows both exist
    path = os.path.join(str(tmp_path), "killed.memscope")
    proc = subprocess.Popen([memscope_bin, "run", "-q", "-o", path, "-i", "0.01", "--cow-interval", "0",
                             "--", sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    try:
        deadline = time.monotonic() + 90
        while _count(path, "SELECT COUNT(*) FROM sample_chunks") == 0:
            assert time.monotonic() < deadline, "no chunk was written within 90 s"
            time.sleep(0.1)
        chunk_end = _count(path, "SELECT MAX(t1) FROM sample_chunks")
        while _count(path, f"SELECT COUNT(*) FROM samples WHERE t > {chunk_end + 1}") == 0:
            assert time.monotonic() < deadline, "no plain rows after the chunk"
            time.sleep(0.1)
        # WHEN memscope is SIGKILLed: no close(), no sealing of the plain tail
        killed_at = time.time()
        proc.kill()
        proc.wait()
        rec = open_recording(path)
        root = rec.processes[0]
        cols = rec.columns(("rss",), root.id)
        # THEN chunks and plain rows read back as one gapless series up to < 1 s before the kill
        assert rec.conn.execute("SELECT COUNT(*) FROM sample_chunks").fetchone()[0] >= 1
        assert rec.conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] >= 1
        assert cols.t[-1] >= killed_at - 1.0
        assert len(np.unique(cols.t)) == len(cols)  # no sample in both tables
        assert np.all(cols.values["rss"] > 0)
        gaps = np.diff(cols.t)
        assert gaps.max() < 2.0, f"hole of {gaps.max():.2f}s in the series"
        assert build_summary(rec).processes[0].samples == len(cols)
    finally:
        rec_pid = _count(path, "SELECT pid FROM processes WHERE role = 'root'")
        if rec_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec_pid, signal.SIGKILL)
