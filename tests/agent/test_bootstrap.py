"""The environment bootstrap on real interpreters: it loads the agent in every process of the
tree (root, forked, exec'd) and changes nothing else the target can observe."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from memscope.inject import AgentClient, agent_env
from tests.agent.conftest import pythons, target
from tests.conftest import target_python

TARGET = target("bootstrap_target.py")


def run(python: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, TARGET], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def states(out: str) -> dict[str, dict[str, object]]:
    return {s["role"]: s for s in map(json.loads, out.splitlines())}


@pytest.fixture
def user_site(tmp_path: Path) -> str:
    d = tmp_path / "usersite"
    d.mkdir()
    (d / "sitecustomize.py").write_text("MARKER = 'user-sitecustomize-ran'\n")
    return str(d)


@pytest.mark.parametrize("version", pythons())
def test_bootstrap_loads_agent_everywhere_and_keeps_behaviour(
    version: str, run_dir: str, user_site: str
) -> None:
    python = target_python(version)
    assert python is not None
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MEMSCOPE"))}
    base["PYTHONPATH"] = user_site

    # GIVEN the target run plainly, and run with the bootstrap asking for 7 frames
    plain = run(python, base)
    traced = run(python, agent_env(base, run_dir, 7))

    # THEN exit status, stderr and the user's own sitecustomize are unchanged
    assert plain.returncode == traced.returncode == 3
    assert traced.stderr == plain.stderr == ""
    before, after = states(plain.stdout), states(traced.stdout)
    assert set(after) == {"root", "fork", "exec"}
    for role in ("root", "fork", "exec"):
        assert after[role]["marker"] == before[role]["marker"] == "user-sitecustomize-ran"
        assert after[role]["sitecustomize"] == before[role]["sitecustomize"]
        assert after[role]["bootstrap_on_path"] is False
        assert before[role]["tracing"] is False
    # AND tracing runs in the root and in exec'd children, but not in forked workers
    assert after["root"]["tracing"] is True and after["root"]["frames"] == 7
    assert after["exec"]["tracing"] is True
    assert after["fork"]["tracing"] is False
    # AND every process had its own agent socket
    pids = {int(str(s["pid"])) for s in after.values()}
    socks = {int(n[6:-5]) for n in os.listdir(run_dir) if n.endswith(".sock")}
    assert pids - socks <= {after["root"]["pid"], after["exec"]["pid"]}  # those exited cleanly


@pytest.mark.parametrize("version", ["3.8", "3.13"])
def test_no_sitecustomize_fails_import_as_before(version: str, run_dir: str) -> None:
    python = target_python(version)
    if python is None:
        pytest.skip(f"no CPython {version}")
    code = "import sys, tracemalloc; print('sitecustomize' in sys.modules, tracemalloc.is_tracing())"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MEMSCOPE"))}
    plain = subprocess.run([python, "-c", code], env=base, capture_output=True, text=True)
    traced = subprocess.run(
        [python, "-c", code], env=agent_env(base, run_dir, 3), capture_output=True, text=True
    )
    assert plain.stdout.split()[0] == traced.stdout.split()[0]
    assert traced.stdout.split()[1] == "True"
    assert traced.stderr == plain.stderr == ""


def test_bootstrap_is_inert_without_the_switch(run_dir: str) -> None:
    python = target_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    env = agent_env(os.environ, run_dir, 5)
    env["MEMSCOPE_AGENT"] = "0"
    out = subprocess.run([python, TARGET], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 3
    assert not any(s["tracing"] for s in states(out.stdout).values())
    assert os.listdir(run_dir) == []


def test_forked_child_agent_points_to_its_tracing_parent(run_dir: str) -> None:
    python = target_python("3.12")
    if python is None:
        pytest.skip("no CPython 3.12")
    proc = subprocess.Popen(
        [python, TARGET], env=agent_env(os.environ, run_dir, 4), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    root = json.loads(proc.stdout.readline())
    child = json.loads(proc.stdout.readline())
    assert child["role"] == "fork"
    from memscope.inject import wait_for_agent

    info = wait_for_agent(run_dir, int(child["pid"]), 5.0)
    assert info["tracing"]["mode"] == "detached"
    assert info["tracing"]["origin_pid"] == root["pid"]
    with AgentClient.for_pid(run_dir, int(root["pid"])) as c:
        assert c.request("ping")["tracing"]["mode"] == "tracing"
    assert proc.wait(timeout=30) == 3
