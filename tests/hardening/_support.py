"""Helpers of the hardening tests: a small real recording, in-process CLI calls, privilege drop."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from click.testing import CliRunner

from memscope.cli import cli
from memscope.recording import RecordingWriter

MiB = 1024 * 1024
NONE12 = [None] * 12
#: Run a command as uid 0 with no capabilities at all: what a non-root user can do (the
#: target must run the same way: a process with more capabilities cannot be read).
NOCAP = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]
HAVE_SETPRIV = os.geteuid() == 0 and shutil.which("setpriv") is not None


def full(rss: int, pss: int, uss: int, shared: int = 0) -> list[int]:
    return [rss, pss, uss, shared, 0, 0, uss, 0, 0, pss, 0, 0, uss, shared]


def make_recording(path: str, cmdline: list[str] | None = None) -> str:
    """Two processes, three ticks, known numbers; `cmdline` is the worker's argv."""
    w = RecordingWriter(path, {"mode": "run", "command": ["app"], "started_at": 100.0,
                               "interval_s": 1.0})
    root = w.add_process(pid=10, start_ticks=1, ppid=1, parent_id=None, role="root",
                         cmdline=["app"], exe=None, python_version="3.11", started_at=100.0)
    worker = w.add_process(pid=11, start_ticks=2, ppid=10, parent_id=root, role="worker",
                           cmdline=cmdline or ["app", "worker"], exe=None,
                           python_version="3.11", started_at=101.0)
    w.add_samples([(root, 100.0, *full(50 * MiB, 50 * MiB, 50 * MiB))])
    w.add_samples([(root, 101.0, *full(50 * MiB, 20 * MiB, 5 * MiB, 45 * MiB)),
                   (worker, 101.0, *full(45 * MiB, 15 * MiB, 1 * MiB, 44 * MiB))])
    w.add_samples([(root, 102.0, 50 * MiB, *NONE12, 45 * MiB),
                   (worker, 102.0, *full(85 * MiB, 55 * MiB, 41 * MiB, 44 * MiB))])
    for t in (100.0, 101.0, 102.0):
        w.add_tick(t, 0.001, 0.002, 2, 2)
    w.set_meta(ended_at=103.0, exit_code=0)
    w.close()
    return path


def invoke(*args: str) -> tuple[int, str]:
    """The CLI in-process: (exit code, stdout + stderr); a traceback fails the test."""
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception), result.output)
    return result.exit_code, result.output


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("memscope: error:")]


def memscope_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "memscope", *args]


def wait_for_state(pid: int, state: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[1].split()[0] == state.encode():
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never reached state {state}")


def zombie() -> subprocess.Popen[bytes]:
    """A child that exited and is not reaped yet; the caller waits for it."""
    proc = subprocess.Popen(["true"])
    wait_for_state(proc.pid, "Z")
    return proc
