"""A forked worker of a traced parent exits without copying tracemalloc's tables.

The parent runs the agent's Tracer over 300k objects (one trace each); each worker detaches
as the agent does at fork and exits through normal finalization (sys.exit). os.wait4 gives
the worker's minor faults, one per page it copied: a traced parent's worker must copy no
more than an untraced parent's, while letting finalization free the traces (the behaviour
before Tracer.skip_teardown) copies thousands of pages more.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import target_python

REPO = Path(__file__).resolve().parents[2]
N = 300_000
TARGET = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from memscope.agent._tracing import Tracer
mode = sys.argv[2]
tracer = Tracer()
if mode != "untraced":
    tracer.start(1, os.getpid())
data = [str(i) for i in range(int(sys.argv[3]))]
faults = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        tracer.detach_in_child()
        if mode == "teardown":
            tracer.skip_teardown = lambda: None
        sys.exit(0)
    faults.append(os.wait4(pid, 0)[2].ru_minflt)
print(tracer.mode, min(faults))
"""


def worker_faults(python: str, mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [python, "-c", TARGET, str(REPO), mode, str(N)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    tracer_mode, faults = out.stdout.split()
    return tracer_mode, int(faults)


@pytest.mark.parametrize("version", ["3.8", "3.11", "3.13", "3.14"])
def test_worker_exit_copies_no_trace_tables(version: str) -> None:
    python = target_python(version)
    if python is None:
        pytest.skip(f"CPython {version} is not installed")
    _, untraced = worker_faults(python, "untraced")
    mode, skipped = worker_faults(python, "skip")
    _, teardown = worker_faults(python, "teardown")
    assert mode == "tracing"  # the parent's tracer; its workers detached
    # Freeing 300k traces copies their pages: thousands of faults more than untraced.
    assert teardown > untraced + 2000
    assert skipped <= untraced * 1.05 + 200
