"""Injection into running interpreters: the decision logic (unit), and ptrace / remote_exec
injection into real targets that keep running (integration)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from memscope.inject import (
    AgentClient,
    InjectError,
    PtraceDenied,
    RemoteDebugDisabled,
)
from memscope.inject.attach import (
    detach_agents,
    inject,
    injection_statement,
    plan_injection,
    remote_debug_opt_out,
)
from tests.agent.conftest import pythons, target
from tests.conftest import target_python

LOOP = target("loop_target.py")


@pytest.mark.parametrize(
    ("environ", "cmdline", "refused"),
    [
        ({}, ["python3", "app.py"], False),
        ({"PYTHON_DISABLE_REMOTE_DEBUG": "1"}, ["python3", "app.py"], True),
        ({"PYTHON_DISABLE_REMOTE_DEBUG": ""}, ["python3", "app.py"], False),
        ({}, ["python3", "-X", "disable_remote_debug", "app.py"], True),
        ({}, ["python3", "-Xdisable_remote_debug", "-m", "app"], True),
        ({}, ["python3", "-u", "-X", "dev", "app.py", "-X", "disable_remote_debug"], False),
        ({}, ["python3", "-c", "pass", "-Xdisable_remote_debug"], False),
    ],
)
def test_remote_debug_opt_out(environ: dict[str, str], cmdline: list[str], refused: bool) -> None:
    assert (remote_debug_opt_out(environ, cmdline) is not None) is refused


def test_plan_by_version() -> None:
    assert plan_injection((3, 14), "/usr/bin/python3.14", None).method == "remote_exec"
    assert plan_injection((3, 14), "/usr/bin/python3.14", None).tool == "/usr/bin/python3.14"
    assert plan_injection((3, 15), "/x/python", "/x/libpython3.15.so").method == "remote_exec"
    for minor in range(8, 14):
        plan = plan_injection((3, minor), "/x/python", "/x/libpython.so", ptrace_supported=True)
        assert (plan.method, plan.tool) == ("ptrace", "/x/libpython.so")
    with pytest.raises(InjectError, match="needs x86-64"):
        plan_injection((3, 11), "/x/python", "/x/libpython.so", ptrace_supported=False)
    with pytest.raises(InjectError, match=r"3\.7 is not supported"):
        plan_injection((3, 7), "/x/python", "/x/python")
    with pytest.raises(InjectError, match="not a CPython"):
        plan_injection(None, "/x/node", None)
    with pytest.raises(InjectError, match="free-threaded"):
        plan_injection((3, 13), "/x/python3.13t", "/x/python3.13t", free_threaded=True)
    assert PtraceDenied("x").exit_code == InjectError("x").exit_code == 2


def test_injected_statement_never_raises(tmp_path: Path) -> None:
    # a pending call that raised would surface in the target as a SystemError
    script = tmp_path / "inject-1.py"
    statement = injection_statement(str(script))
    code = compile(statement, "<pending>", "exec")
    exec(code, {})  # the script does not exist: swallowed
    script.write_text("import sys\nsys.modules['__memscope_test__'] = 1\nraise SystemExit(3)\n")
    exec(code, {})  # SystemExit inside: swallowed too
    import sys

    assert sys.modules.pop("__memscope_test__") == 1


def start_loop(python: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [python, LOOP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    return proc


def stop_loop(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    done = json.loads(proc.stdout.readline())
    assert proc.wait(timeout=30) == 0
    return dict(done)


@pytest.mark.slow
@pytest.mark.parametrize("version", pythons())
def test_ptrace_injection_traces_and_target_keeps_running(version: str, run_dir: str) -> None:
    python = target_python(version)
    assert python is not None
    proc = start_loop(python)
    try:
        # WHEN the agent is injected into the running loop
        info = inject(proc.pid, run_dir, 5, timeout=30)
        assert info["pid"] == proc.pid
        assert info["tracing"]["mode"] == "tracing" and info["tracing"]["frames"] == 5
        # THEN allocations made after the attach have sites: the loop's line grows
        time.sleep(0.3)
        with AgentClient.for_pid(run_dir, proc.pid) as c:
            c.request("growth")
            time.sleep(0.5)
            sites = c.request("growth")["sites"]
        with open(LOOP) as f:
            line = next(i for i, s in enumerate(f, 1) if "SITE:loop" in s)
        assert any(s["file"] == LOOP and s["line"] == line for s in sites[:3])
        # AND detaching stops tracing, closes the channel, and the target runs on
        assert detach_agents(run_dir) == [proc.pid]
        time.sleep(0.2)
        assert not os.path.exists(os.path.join(run_dir, f"agent-{proc.pid}.sock"))
    finally:
        done = stop_loop(proc)
    assert int(str(done["n"])) > 100


def test_opt_out_leaves_the_target_alone(run_dir: str) -> None:
    python = target_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    env = dict(os.environ, PYTHON_DISABLE_REMOTE_DEBUG="1")
    proc = start_loop(python, env)
    try:
        with pytest.raises(RemoteDebugDisabled, match="PYTHON_DISABLE_REMOTE_DEBUG"):
            inject(proc.pid, run_dir, 5)
        assert os.listdir(run_dir) == []
    finally:
        stop_loop(proc)


def test_attach_to_missing_pid_is_an_input_error(run_dir: str) -> None:
    with pytest.raises(InjectError, match="no process"):
        inject(2**22 + 12345, run_dir, 5)


@pytest.mark.slow
def test_cli_attach_trace_sites_records_and_detaches(memscope_bin: str, tmp_path: Path) -> None:
    python = target_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    proc = start_loop(python)
    try:
        out = tmp_path / "att.memscope"
        done = subprocess.run(
            [memscope_bin, "attach", str(proc.pid), "--trace-sites=3", "--duration", "2.5",
             "-q", "-o", str(out)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "allocation sites are recorded from now on" in done.stderr
        doc = json.loads(subprocess.run(
            [memscope_bin, "report", str(out), "--format", "json"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout)
        (root,) = [p for p in doc["processes"] if p["pid"] == proc.pid]
        assert root["leak"]["verdict"] in ("stable", "insufficient-data")
        # the target was told to stop tracing: it answers nothing any more and runs on
        assert proc.poll() is None
    finally:
        done_event = stop_loop(proc)
    assert int(str(done_event["n"])) > 100
