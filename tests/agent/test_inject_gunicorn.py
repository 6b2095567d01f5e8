"""Attach to a real `gunicorn --preload -w 2` master while it serves requests on loopback: the
agent starts in the master and not one request fails; the master exits 0 on SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from memscope.inject.attach import detach_agents, inject
from tests.agent.conftest import any_python
from tests.conftest import FIXTURES

MAX_REQUESTS = 3000  # the request loop is bounded whatever happens
AFTER_DETACH = 20  # requests still served after memscope detached


def gunicorn_path(tmp_path: Path) -> str | None:
    """A PYTHONPATH entry holding only this environment's gunicorn and packaging (both pure
    Python), so that other interpreters can run the same gunicorn."""
    spec = importlib.util.find_spec("gunicorn")
    if spec is None or spec.origin is None:
        return None
    site = Path(spec.origin).parent.parent
    out = tmp_path / "gunicorn-path"
    out.mkdir()
    for name in ("gunicorn", "packaging"):
        if (site / name).is_dir():
            (out / name).symlink_to(site / name)
    return str(out)


def python_for(version: str) -> str | None:
    if version == "venv":
        return sys.executable
    return any_python(version)


class Requests(threading.Thread):
    def __init__(self, port: int, limit: int = MAX_REQUESTS) -> None:
        super().__init__(daemon=True)
        self.limit = limit
        self.url = f"http://127.0.0.1:{port}/?count=1000"
        self.ok = 0
        self.errors: list[str] = []
        self.stop_at: int | None = None  # stop once this many requests were served
        self.durations: list[float] = []

    def run(self) -> None:
        for _ in range(self.limit):
            if self.stop_at is not None and self.ok >= self.stop_at:
                return
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as r:
                    body = r.read()
                self.durations.append(time.monotonic() - t0)
                if r.status != 200 or b'"sum"' not in body:
                    self.errors.append(f"{r.status} {body[:80]!r}")
                else:
                    self.ok += 1
            except OSError as exc:
                self.errors.append(repr(exc))


def wait_serving(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn exited during start-up"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/?count=1", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not serve within the timeout")


def wait_workers(proc: subprocess.Popen[str], count: int, timeout: float = 60) -> None:
    """Wait until the master has forked all its workers. gunicorn forks them one by one with
    random pauses, so one may still be unforked when the first serves; a worker forked after
    the injection would carry an agent of its own (by design: see agent/runtime.py)."""
    deadline = time.monotonic() + timeout
    path = f"/proc/{proc.pid}/task/{proc.pid}/children"
    while time.monotonic() < deadline:
        assert proc.poll() is None, "gunicorn exited during start-up"
        with open(path) as f:
            if len(f.read().split()) >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"gunicorn did not fork {count} workers within the timeout")


@pytest.mark.slow
@pytest.mark.parametrize("version", ["venv", "3.12", "3.13", "3.14"])
def test_attach_to_a_serving_gunicorn_master(version: str, run_dir: str, tmp_path: Path) -> None:
    python = python_for(version)
    path = gunicorn_path(tmp_path)
    if python is None or path is None:
        pytest.skip(f"no CPython {version} or no gunicorn")
    env = dict(os.environ, PYTHONPATH=path, MEMSCOPE_FIXTURE_SIZE="50000")
    if subprocess.run([python, "-c", "import gunicorn.app.wsgiapp"], env=env,
                      capture_output=True, timeout=60, check=False).returncode != 0:
        pytest.skip(f"gunicorn does not import on {python}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [python, "-m", "gunicorn", "--preload", "-w", "2", "-b", f"127.0.0.1:{port}",
         "--graceful-timeout", "5", "gunicorn_app:app"],
        cwd=FIXTURES, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    load = Requests(port)
    try:
        wait_serving(port, proc)
        wait_workers(proc, 2)
        load.start()
        # WHEN memscope injects the agent into the master while requests are being served
        info = inject(proc.pid, run_dir, 5, timeout=60)
        assert info["pid"] == proc.pid and info["tracing"]["mode"] == "tracing"
        assert detach_agents(run_dir) == [proc.pid]
        load.stop_at = load.ok + AFTER_DETACH
        load.join(timeout=120)
        assert not load.is_alive()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # THEN no request failed, requests were served after the detach, and the master exited 0
    assert load.errors == []
    assert load.ok >= AFTER_DETACH
    assert code == 0, proc.stderr.read() if proc.stderr else ""
