"""Following every process of a `run` tree (issue 12): short-lived children, a double fork,
PID reuse within one clock tick, pthread_exit on the main thread, and memscope's own death."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time

import pytest

from memscope.recording import open_recording

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(HERE, "tree_target.py")
MiB = 1024 * 1024
ROOT = os.geteuid() == 0


def run(memscope_bin: str, path: str, *target: str, options: tuple[str, ...] = (),
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([memscope_bin, "run", "-q", "-o", path, *options, "--", sys.executable,
                           TARGET, *target], capture_output=True, text=True, timeout=timeout)


def wait_for(condition, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.slow
@pytest.mark.skipif(not ROOT, reason="the proc connector needs root")
def test_500_short_children_none_missed(memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    # GIVEN a root that forks 500 children living 10-50 ms each (child i exits with i % 100)
    path = os.path.join(str(tmp_path), "r.memscope")
    log = os.path.join(str(tmp_path), "children.log")
    done = run(memscope_bin, path, "children", "500", log)
    assert done.returncode == 0, done.stderr
    rec = open_recording(path)
    with open(log) as fh:
        life = {int(p): (int(i), float(t0), float(t1))
                for p, i, t0, t1 in (line.split() for line in fh)}
    workers = [p for p in rec.processes if p.role == "worker"]
    # THEN at the default interval every child has a row, with its exit and exit code
    assert len(workers) == 500
    assert {p.pid for p in workers} == set(life)
    assert all(p.exited_at is not None for p in workers)
    codes = collections.Counter(p.exit_code for p in workers)
    assert codes == collections.Counter(i % 100 for i in range(500))
    assert rec.meta["births_tracked"] == "proc-connector+scan"
    # AND every child alive during a whole tick has a sample from that tick
    ticks = rec.ticks()
    sampled = {s.process_id for s in rec.samples()}
    for p in workers:
        _, t0, t1 = life[p.pid]
        if any(t0 <= t and t + wall <= t1 for t, wall, *_ in ticks):
            assert p.id in sampled, p


@pytest.mark.slow
def test_double_forked_grandchild_is_recorded_with_its_memory(
        memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    # GIVEN a child that forks a grandchild holding 50 MiB for 3 s, and exits at once
    path = os.path.join(str(tmp_path), "r.memscope")
    done = run(memscope_bin, path, "double_fork", "3")
    assert done.returncode == 0, done.stderr
    grandchild = int(done.stdout.split()[1])
    rec = open_recording(path)
    rows = [p for p in rec.processes if p.pid == grandchild]
    # THEN the orphan stays in the tree (subreaper) and its memory is recorded
    assert len(rows) == 1
    assert rows[0].role == "descendant"
    peak = max((s["rss"] or 0) for s in rec.samples(rows[0].id))
    assert peak >= 50 * MiB
    assert rows[0].exit_code == 5


@pytest.mark.slow
@pytest.mark.skipif(not ROOT or not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK),
                    reason="forcing PID reuse needs a writable ns_last_pid, the events root")
def test_pid_reused_within_one_tick_never_aborts(memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    # GIVEN children whose PID is recycled at once for another child (same start tick)
    path = os.path.join(str(tmp_path), "r.memscope")
    done = run(memscope_bin, path, "reuse", "3", options=("-i", "0.01"))
    # THEN the recording completes, and the command's status is its own
    assert done.returncode == 0, done.stderr
    _, rounds, _, collisions = done.stdout.split()
    assert int(collisions) >= 1, "the machine gave away the PID every time; no collision to test"
    rec = open_recording(path)
    # AND both processes of every pair have their own row and exit code (the first exits 0,
    # the one on its recycled PID 1), told apart by the kernel's events
    workers = [p for p in rec.processes if p.role == "worker"]
    assert collections.Counter(p.exit_code for p in workers) == {0: int(rounds), 1: int(rounds)}
    reuses = rec.conn.execute("SELECT COUNT(*) FROM processes WHERE reuse > 0").fetchone()[0]
    assert reuses >= 1
    assert rec.meta["births_tracked"] == "proc-connector+scan"


@pytest.mark.slow
def test_pthread_exit_of_the_main_thread_is_not_an_exit(
        memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    # GIVEN a process whose main thread exits by pthread_exit while a thread holds 30 MiB
    path = os.path.join(str(tmp_path), "r.memscope")
    proc = subprocess.Popen([memscope_bin, "run", "-q", "-o", path, "-i", "0.1", "--",
                             sys.executable, TARGET, "pthread_exit"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        alone_at = float(proc.stdout.readline().split()[1])

        def later_samples() -> list[int]:
            rec = open_recording(path)
            try:
                root = next((p for p in rec.processes if p.role == "root"), None)
                if root is None:  # not committed yet
                    return []
                return [s["rss"] or 0 for s in rec.samples(root.id) if s.t > alone_at]
            finally:
                rec.close()

        # WHEN memscope has sampled it several times since
        samples = wait_for(lambda: len(later_samples()) >= 5 and later_samples())
        # THEN it was still measured with its memory, and not stopped
        assert min(samples) >= 30 * MiB
        assert proc.poll() is None
        proc.stdin.write("exit\n")
        proc.stdin.flush()
        _, err = proc.communicate(timeout=60)
        # AND its exit status is its own (7), not SIGTERM's
        assert proc.returncode == 7, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _trap_under_memscope(memscope_bin: str, path: str, *options: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([memscope_bin, "run", "-q", "-o", path, *options, "--",
                             sys.executable, TARGET, "trap"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[0] == "up"
    return proc, int(line[1])


@pytest.mark.parametrize(("options", "expected"),
                         [((), signal.SIGTERM), (("--kill-signal", "HUP"), signal.SIGHUP)])
def test_sigkill_of_memscope_signals_the_command(
        memscope_bin: str, tmp_path: os.PathLike[str], options: tuple[str, ...], expected: int) -> None:
    # GIVEN a command that records the signals it gets
    proc, target = _trap_under_memscope(memscope_bin, os.path.join(str(tmp_path), "r.memscope"),
                                        *options)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        # WHEN memscope is killed with SIGKILL
        proc.kill()
        proc.wait()
        # THEN the command got the kill signal (the parent-death signal; the kernel sends it
        # again each time the command is reparented as memscope's threads die)
        proc.stdin.write("?\n")
        proc.stdin.flush()
        got = proc.stdout.readline().split()
        assert got[0] == "got" and set(got[1:]) == {str(int(expected))}
    finally:
        os.kill(target, signal.SIGKILL)


def test_keep_running_leaves_the_command_alone(memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    proc, target = _trap_under_memscope(memscope_bin, os.path.join(str(tmp_path), "r.memscope"),
                                        "--keep-running")
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.kill()
        proc.wait()
        proc.stdin.write("?\n")
        proc.stdin.flush()
        # THEN it received nothing and still answers
        assert proc.stdout.readline().split() == ["got"]
    finally:
        os.kill(target, signal.SIGKILL)


@pytest.mark.parametrize("value", ["BOGUS", "99"])
def test_a_bad_kill_signal_is_a_usage_error(memscope_bin: str, value: str) -> None:
    done = subprocess.run([memscope_bin, "run", "--kill-signal", value, "--", "true"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--kill-signal" in done.stderr.splitlines()[-1]
