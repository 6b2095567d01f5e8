"""Injection never harms the target: a real process whose main thread is blocked in each kind
of call (sleep, select, epoll, accept, pipe read, a join while a thread waits on a lock) gets
the agent on every CPython (3.8-3.13 by ptrace, 3.14+ by sys.remote_exec), and every one of
its calls completes normally, with the same exit status."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memscope.cow.cpython import detect_target
from memscope.inject import AgentClient, InjectError, PtraceDenied, RemoteDebugDisabled
from memscope.inject.attach import detach_agents, inject
from memscope.inject.pending import queue_statement
from memscope.inject.ptrace import Thread
from tests.agent.conftest import any_python, matrix_pythons, target

BLOCKED = target("blocked_target.py")
MODES = ["sleep", "select", "epoll", "accept", "pipe", "lock"]
VERSIONS = ["3.8", "3.11", "3.12", "3.13", "3.14", "3.15", "system"]
FEED_EVERY_S = 0.05


def alive(pid: int) -> bool:
    """Whether `pid` runs, read from /proc. (Popen.poll() from another thread must not be
    used: the waitpid() it makes would consume the ptrace stops meant for the injector, which
    runs in this process and traces its own child here.)"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class Feeder(threading.Thread):
    """Completes the target's blocking call again and again (accept, pipe, lock modes) until
    the target exits; counts what it could not deliver while the target was alive."""

    def __init__(self, mode: str, proc: subprocess.Popen[str], port_file: Path) -> None:
        super().__init__(daemon=True)
        self.mode, self.proc, self.port_file = mode, proc, port_file
        self.sent = 0
        self.failures: list[str] = []

    def run(self) -> None:
        if self.mode not in ("accept", "pipe", "lock"):
            return
        while alive(self.proc.pid):
            try:
                self._once()
                self.sent += 1
            except OSError as exc:
                deadline = time.monotonic() + 10  # the target may be exiting right now
                while alive(self.proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.01)
                if alive(self.proc.pid):
                    self.failures.append(repr(exc))
                return
            time.sleep(FEED_EVERY_S)

    def _once(self) -> None:
        if self.mode == "accept":
            port = int(self.port_file.read_text())
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"x")
        else:
            assert self.proc.stdin is not None
            self.proc.stdin.write("x\n")
            self.proc.stdin.flush()


def wait_until_gone(path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} still exists"
        time.sleep(0.02)


def start_blocked(python: str, mode: str, tmp_path: Path, env: dict[str, str] | None = None,
                  args: tuple[str, ...] = ()) -> tuple[subprocess.Popen[str], Feeder, Path]:
    stop = tmp_path / "stop"
    port = tmp_path / "port"
    proc = subprocess.Popen(
        [python, *args, BLOCKED, mode, str(stop), str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    feeder = Feeder(mode, proc, port)
    feeder.start()
    return proc, feeder, stop


def finish(proc: subprocess.Popen[str], feeder: Feeder, stop: Path) -> dict[str, object]:
    """Let the target end by itself; return its last report (its exit status must be 7)."""
    stop.touch()
    assert proc.wait(timeout=60) == 7
    feeder.join(timeout=30)
    assert proc.stdout is not None
    done = json.loads(proc.stdout.readline())
    assert done["event"] == "done"
    assert feeder.failures == []
    return dict(done)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("version", matrix_pythons(VERSIONS))
def test_injection_leaves_the_blocked_call_intact(
    version: str, mode: str, run_dir: str, tmp_path: Path
) -> None:
    python = any_python(version)
    assert python is not None
    proc, feeder, stop = start_blocked(python, mode, tmp_path)
    try:
        # WHEN the agent is injected while the main thread waits in its call
        info = inject(proc.pid, run_dir, 5, timeout=60)
        # THEN it runs in the target (the lock mode's main thread runs it after its join)
        assert info["pid"] == proc.pid and info["tracing"]["mode"] == "tracing"
        with AgentClient.for_pid(run_dir, proc.pid) as c:
            assert c.request("ping")["pid"] == proc.pid
        assert detach_agents(run_dir) == [proc.pid]
        assert proc.poll() is None
        if mode == "select":  # AND a second session can attach again after the detach
            wait_until_gone(os.path.join(run_dir, f"agent-{proc.pid}.sock"))
            again = inject(proc.pid, run_dir, 3, timeout=60)
            assert again["tracing"]["mode"] == "tracing" and again["tracing"]["frames"] == 3
            assert detach_agents(run_dir) == [proc.pid]
    finally:
        done = finish(proc, feeder, stop)
    # AND every blocking call of the target completed normally, before and after
    assert done["errors"] == []
    assert int(str(done["n"])) >= 1


@pytest.mark.parametrize("version", matrix_pythons(["3.11", "3.14", "3.15"]))
@pytest.mark.parametrize("how", ["env", "-X"])
def test_opt_out_is_honoured_and_the_target_runs_on(
    version: str, how: str, run_dir: str, tmp_path: Path
) -> None:
    python = any_python(version)
    assert python is not None
    env = dict(os.environ)
    args: tuple[str, ...] = ()
    if how == "env":
        env["PYTHON_DISABLE_REMOTE_DEBUG"] = "1"
    else:
        args = ("-X", "disable_remote_debug")
    proc, feeder, stop = start_blocked(python, "select", tmp_path, env, args)
    try:
        with pytest.raises(RemoteDebugDisabled, match="not injecting"):
            inject(proc.pid, run_dir, 5)
        assert os.listdir(run_dir) == []
    finally:
        done = finish(proc, feeder, stop)
    assert done["errors"] == []


@pytest.mark.parametrize("version", matrix_pythons(["3.11"]))
def test_a_target_ignoring_sigsegv_is_refused_untouched(
    version: str, run_dir: str, tmp_path: Path
) -> None:
    python = any_python(version)
    assert python is not None
    code = tmp_path / "ign.py"  # the ptrace injector's last step stops on a SIGSEGV
    code.write_text(
        "import signal, runpy, sys\n"
        "signal.signal(signal.SIGSEGV, signal.SIG_IGN)\n"
        f"sys.argv = [{BLOCKED!r}] + sys.argv[1:]\n"
        f"runpy.run_path({BLOCKED!r}, run_name='__main__')\n"
    )
    stop = tmp_path / "stop"
    proc = subprocess.Popen([python, str(code), "select", str(stop), str(tmp_path / "p")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    feeder = Feeder("select", proc, tmp_path / "p")
    feeder.start()
    try:
        with pytest.raises(InjectError, match="ignores SIGSEGV"):
            inject(proc.pid, run_dir, 5)
    finally:
        done = finish(proc, feeder, stop)
    assert done["errors"] == []


@pytest.mark.parametrize("version", matrix_pythons(["3.12"]))
def test_an_already_traced_target_is_refused_untouched(
    version: str, run_dir: str, tmp_path: Path
) -> None:
    python = any_python(version)
    assert python is not None
    proc, feeder, stop = start_blocked(python, "sleep", tmp_path)
    tracer = Thread(proc.pid)  # another tracer holds the target (seized, not stopped)
    tracer.seize()
    try:
        with pytest.raises(PtraceDenied, match=f"already traced by process {os.getpid()}"):
            inject(proc.pid, run_dir, 5)
    finally:
        try:
            tracer.detach()
        finally:
            done = finish(proc, feeder, stop)
    assert done["errors"] == []


@pytest.mark.parametrize("version", matrix_pythons(["3.13"]))
def test_a_main_thread_blocking_sigsegv_is_retried_then_refused(
    version: str, tmp_path: Path
) -> None:
    python = any_python(version)
    assert python is not None
    code = tmp_path / "blk.py"
    code.write_text(
        "import signal, runpy, sys\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGSEGV})\n"
        f"sys.argv = [{BLOCKED!r}] + sys.argv[1:]\n"
        f"runpy.run_path({BLOCKED!r}, run_name='__main__')\n"
    )
    stop = tmp_path / "stop"
    proc = subprocess.Popen([python, str(code), "sleep", str(stop), str(tmp_path / "p")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    feeder = Feeder("sleep", proc, tmp_path / "p")
    feeder.start()
    try:
        target_info = detect_target(proc.pid)
        assert target_info.image is not None
        with pytest.raises(InjectError, match=r"SIGSEGV unblocked \(\d+ tries in 1s\)"):
            queue_statement(proc.pid, target_info.image, "pass", timeout=1.0)
    finally:
        done = finish(proc, feeder, stop)
    assert done["errors"] == []


@pytest.mark.parametrize("version", matrix_pythons(["3.11"]))
def test_a_tracer_killed_while_holding_the_target_releases_it(
    version: str, tmp_path: Path
) -> None:
    python = any_python(version)
    assert python is not None
    proc, feeder, stop = start_blocked(python, "sleep", tmp_path)
    # GIVEN an injector that stops the target's main thread, then dies by SIGKILL
    tracer = subprocess.run(
        [sys.executable, "-c",
         "import os, signal, sys\n"
         "from memscope.inject.ptrace import Thread\n"
         f"t = Thread({proc.pid}); t.seize(); t.interrupt(30)\n"
         "print(open(f'/proc/{t.tid}/stat').read().rsplit(')', 1)[1].split()[0], flush=True)\n"
         "os.kill(os.getpid(), signal.SIGKILL)\n"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert tracer.returncode == -signal.SIGKILL
    assert tracer.stdout.strip() == "t"  # the target was held in a tracing stop
    # THEN the kernel released it: it runs on and its sleeps complete normally
    done = finish(proc, feeder, stop)
    assert done["errors"] == [] and int(str(done["n"])) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("version", matrix_pythons(["3.8", "3.13"]))
def test_signals_arriving_during_injection_are_delivered(
    version: str, run_dir: str, tmp_path: Path
) -> None:
    python = any_python(version)
    assert python is not None
    code = tmp_path / "sig.py"
    code.write_text(
        "import os, signal, runpy, sys\n"
        "got = []\n"
        "signal.signal(signal.SIGUSR1, lambda *a: got.append(1))\n"
        f"sys.argv = [{BLOCKED!r}] + sys.argv[1:]\n"
        "try:\n"
        f"    runpy.run_path({BLOCKED!r}, run_name='__main__')\n"
        "finally:\n"
        "    sys.stdout.write('{\"signals\": %d}\\n' % len(got))\n"
    )
    stop = tmp_path / "stop"
    proc = subprocess.Popen([python, str(code), "sleep", str(stop), str(tmp_path / "p")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    feeder = Feeder("sleep", proc, tmp_path / "p")
    feeder.start()
    halt = threading.Event()

    def pelt() -> None:  # SIGUSR1 every millisecond while the injection runs
        while not halt.is_set():
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(0.001)

    storm = threading.Thread(target=pelt, daemon=True)
    storm.start()
    try:
        for _ in range(3):
            info = inject(proc.pid, run_dir, 5, timeout=60)
            assert info["tracing"]["mode"] == "tracing"
            assert detach_agents(run_dir) == [proc.pid]
            wait_until_gone(os.path.join(run_dir, f"agent-{proc.pid}.sock"))
    finally:
        halt.set()
        storm.join()
        done = finish(proc, feeder, stop)
    assert done["errors"] == []
    assert json.loads(proc.stdout.readline())["signals"] > 0


@pytest.mark.parametrize("version", matrix_pythons(["3.12"]))
def test_a_stopped_target_is_refused_and_stays_stopped(
    version: str, run_dir: str, tmp_path: Path
) -> None:
    python = any_python(version)
    assert python is not None
    proc, feeder, stop = start_blocked(python, "sleep", tmp_path)
    os.kill(proc.pid, signal.SIGSTOP)

    def state() -> str:
        with open(f"/proc/{proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    deadline = time.monotonic() + 30
    while state() != "T":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        with pytest.raises(InjectError, match=r"it is stopped \(T \(stopped\)\)"):
            inject(proc.pid, run_dir, 5)
        assert state() == "T"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        done = finish(proc, feeder, stop)
    assert done["errors"] == []
