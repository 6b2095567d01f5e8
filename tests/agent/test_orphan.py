"""Nothing is left behind when memscope dies: agents notice that the memscope owning their run
directory is gone (SIGKILL included), stop tracing and remove their sockets, and the next
memscope start removes run directories whose owner is dead."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memscope.agent._owner import start_ticks
from memscope.inject import agent_env, make_run_dir
from memscope.inject.bootstrap import clean_stale_run_dirs
from tests.agent.conftest import any_python, matrix_pythons, target

TARGET = target("orphan_target.py")
NOTICE_S = 30.0  # the agents check every second; generous for a loaded machine


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A TMPDIR short enough for agent socket paths (AF_UNIX allows 107 bytes)."""
    path = tempfile.mkdtemp(prefix="ms-orphan-", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


def wait_until(what: str, cond: Callable[[], bool], timeout: float = NOTICE_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def status(status_dir: Path, pid: int) -> dict[str, object]:
    try:
        return dict(json.loads((status_dir / f"status-{pid}.json").read_text()))
    except (OSError, ValueError):
        return {}


def stop_target(proc: subprocess.Popen[str], status_dir: Path) -> int:
    (status_dir / "stop").touch()
    return proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("version", matrix_pythons(["3.11", "3.14"]))
def test_sigkilled_attach_leaves_no_tracing_and_no_socket(
    version: str, memscope_bin: str, tmp_path: Path, short_tmp: Path
) -> None:
    python = any_python(version)
    assert python is not None
    tmp = short_tmp
    status_dir = tmp_path / "status"
    status_dir.mkdir()
    proc = subprocess.Popen([python, TARGET, str(status_dir)], text=True)
    memscope = subprocess.Popen(
        [memscope_bin, "attach", str(proc.pid), "--trace-sites=3", "--duration", "300", "-q",
         "-o", str(tmp_path / "a.memscope")],
        env=dict(os.environ, TMPDIR=str(tmp)), stderr=subprocess.DEVNULL,
    )
    try:
        # GIVEN memscope attached with --trace-sites: the target traces and has a socket
        wait_until("the agent", lambda: status(status_dir, proc.pid).get("tracing") is True)
        (run_dir,) = glob.glob(str(tmp / f"memscope-{memscope.pid}-*"))
        sock = Path(run_dir) / f"agent-{proc.pid}.sock"
        assert sock.exists()
        # WHEN memscope is killed
        memscope.send_signal(signal.SIGKILL)
        memscope.wait(timeout=30)
        # THEN the agent stops tracing and removes its socket and injection files
        wait_until("tracing to stop", lambda: status(status_dir, proc.pid).get("tracing") is False)
        wait_until("the socket to go", lambda: os.listdir(run_dir) == [])
        assert proc.poll() is None
        # AND the next memscope start removes the dead owner's run directory
        fresh = make_run_dir(str(tmp))
        assert os.listdir(tmp) == [os.path.basename(fresh)]
        os.rmdir(fresh)
    finally:
        if memscope.poll() is None:
            memscope.kill()
            memscope.wait()
        code = stop_target(proc, status_dir)
    assert code == 0


@pytest.mark.slow
def test_forked_workers_notice_their_owner_is_gone(short_tmp: Path) -> None:
    tmp_path = short_tmp
    python = any_python("3.12")
    if python is None:
        pytest.skip("no CPython 3.12")
    owner = subprocess.Popen(["sleep", "600"])
    start = start_ticks(owner.pid)
    assert start is not None
    run_dir = tmp_path / f"memscope-{owner.pid}-{start}-test"
    run_dir.mkdir(mode=0o700)
    status_dir = tmp_path / "status"
    status_dir.mkdir()
    env = agent_env(os.environ, str(run_dir), 4, trace_workers=True)
    proc = subprocess.Popen([python, TARGET, str(status_dir), "--fork"], env=env, text=True)
    try:
        # GIVEN a parent and its forked worker, both tracing, both serving a socket
        def both(tracing: bool) -> bool:
            found = [json.loads(p.read_text()) for p in status_dir.glob("status-*.json")]
            return len(found) == 2 and all(s["tracing"] is tracing for s in found)

        wait_until("two tracing processes", lambda: both(True))
        wait_until("two sockets", lambda: len(glob.glob(str(run_dir / "agent-*.sock"))) == 2)
        # WHEN the owner dies
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
        # THEN both stop tracing (the worker by the cheap detach) and remove their sockets
        wait_until("tracing to stop in both", lambda: both(False))
        wait_until("the sockets to go", lambda: os.listdir(run_dir) == [])
        assert proc.poll() is None
        # AND the stale run directory is removed, live ones and foreign names are kept
        live = make_run_dir(str(tmp_path))
        assert not run_dir.exists()
        assert os.path.isdir(live) and status_dir.is_dir()
        assert clean_stale_run_dirs(str(tmp_path)) == []
        os.rmdir(live)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        code = stop_target(proc, status_dir)
    assert code == 0
