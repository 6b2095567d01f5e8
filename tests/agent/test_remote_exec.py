"""`attach --trace-sites` on CPython 3.14 and 3.15, end to end through sys.remote_exec.

3.14+ targets are injected by their own interpreter (`python3.X -c sys.remote_exec(...)`),
not by gdb: Debian's builds installed by ../shared/tools/cpython-from-debian (see .ci/run).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from memscope.inject import AgentClient, RemoteDebugDisabled
from memscope.inject.attach import detach_agents, inject, plan_injection
from tests.agent.test_attach import LOOP, start_loop, stop_loop
from tests.conftest import DEBIAN_VERSIONS, target_python

pytestmark = pytest.mark.slow


def _python(version: str) -> str:
    python = target_python(version)
    if python is None:
        pytest.skip(f"CPython {version} is not installed (../shared/tools/cpython-from-debian)")
    return python


@pytest.mark.parametrize("version", DEBIAN_VERSIONS)
def test_remote_exec_traces_sites_and_detaches(version: str, run_dir: str) -> None:
    python = _python(version)
    assert plan_injection(tuple(int(x) for x in version.split(".")), python, None).method == (
        "remote_exec"
    )
    proc = start_loop(python)
    try:
        info = inject(proc.pid, run_dir, 5, timeout=60)
        assert info["pid"] == proc.pid
        assert info["tracing"]["mode"] == "tracing" and info["tracing"]["frames"] == 5
        with open(LOOP) as f:
            line = next(i for i, s in enumerate(f, 1) if "SITE:loop" in s)
        with AgentClient.for_pid(run_dir, proc.pid) as c:
            c.request("growth")
            deadline = time.monotonic() + 30
            while True:  # the loop allocates steadily: its line shows up among the top sites
                sites = c.request("growth")["sites"]
                if any(s["file"] == LOOP and s["line"] == line for s in sites[:3]):
                    break
                assert time.monotonic() < deadline, sites[:3]
                time.sleep(0.2)
        assert detach_agents(run_dir) == [proc.pid]
        deadline = time.monotonic() + 30
        while os.path.exists(os.path.join(run_dir, f"agent-{proc.pid}.sock")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        done = stop_loop(proc)  # it ran on after the detach and ended cleanly (exit 0)
    assert int(str(done["n"])) > 0


@pytest.mark.parametrize("version", DEBIAN_VERSIONS)
def test_remote_exec_respects_the_targets_opt_out(version: str, run_dir: str) -> None:
    python = _python(version)
    env = dict(os.environ, PYTHON_DISABLE_REMOTE_DEBUG="1")
    proc = start_loop(python, env)
    try:
        with pytest.raises(RemoteDebugDisabled, match="PYTHON_DISABLE_REMOTE_DEBUG"):
            inject(proc.pid, run_dir, 5)
        assert os.listdir(run_dir) == []
    finally:
        stop_loop(proc)


@pytest.mark.parametrize("version", DEBIAN_VERSIONS)
def test_cli_attach_trace_sites_on_new_cpython(
    version: str, memscope_bin: str, tmp_path: Path
) -> None:
    proc = start_loop(_python(version))
    try:
        out = tmp_path / "att.memscope"
        done = subprocess.run(
            [memscope_bin, "attach", str(proc.pid), "--trace-sites=3", "--duration", "2.5",
             "-q", "-o", str(out)],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "allocation sites are recorded from now on" in done.stderr
        doc = json.loads(subprocess.run(
            [memscope_bin, "report", str(out), "--format", "json"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout)
        (root,) = [p for p in doc["processes"] if p["pid"] == proc.pid]
        assert root["leak"]["verdict"] in ("stable", "insufficient-data")
        assert proc.poll() is None
    finally:
        done_event = stop_loop(proc)
    assert int(str(done_event["n"])) > 100
