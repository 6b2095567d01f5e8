"""COW to sites on real forks: the copied ints of a worker are resolved, through the parent's
agent, to the line that allocated them; the worker itself runs untraced."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from memscope.cow.copied_sites import tree_sites
from memscope.cow.sites import UNTRACED
from memscope.inject import agent_env, wait_for_agent
from tests.agent.conftest import pythons, target
from tests.conftest import target_python

TARGET = target("site_target.py")
N_INTS = 100_000


def marked_line(tag: str) -> int:
    with open(TARGET) as f:
        for i, line in enumerate(f, 1):
            if f"SITE:{tag}" in line:
                return i
    raise AssertionError(tag)


@pytest.fixture
def forked(request: pytest.FixtureRequest, run_dir: str) -> Iterator[tuple[int, int]]:
    python = target_python(request.param)
    assert python is not None
    proc = subprocess.Popen(
        [python, TARGET, str(N_INTS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=agent_env({"PATH": "/usr/bin:/bin"}, run_dir, 4),
    )
    assert proc.stdout is not None and proc.stdin is not None
    ready = json.loads(proc.stdout.readline())
    worked = json.loads(proc.stdout.readline())
    assert worked["event"] == "worked"
    yield proc.pid, int(ready["worker"])
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("forked", pythons(), indirect=True)
def test_copied_ints_resolve_to_their_line(forked: tuple[int, int], run_dir: str) -> None:
    parent, worker = forked
    # GIVEN a worker that iterated the parent's ints, running untraced
    info = wait_for_agent(run_dir, worker, 10.0)
    assert info["tracing"]["mode"] == "detached"
    assert info["tracing"]["origin_pid"] == parent
    # WHEN its copied pages are resolved to sites through the parent's agent
    per_worker, total = tree_sites(run_dir, {worker: parent})
    (ws,) = per_worker
    assert ws.error == ""
    traced = [s for s in ws.sites if s.site != UNTRACED]
    # THEN the top traced site is the line that built the ints, with all their bytes
    top = traced[0]
    assert top.site.endswith(f"site_target.py:{marked_line('ints')}")
    assert top.objects >= 0.99 * N_INTS
    assert top.bytes >= 0.99 * N_INTS * 32
    assert top.bytes <= ws.copied_bytes
    assert top.traceback[0][1] == marked_line("ints")
    # AND the sum across workers equals the single worker here
    assert total[0].site == ws.sites[0].site and total[0].bytes == ws.sites[0].bytes
