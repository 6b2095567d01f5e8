"""`memscope attach` on live trees; accuracy against psutil and smem on a quiescent process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from memscope.analysis.summary import build_summary
from memscope.recording import open_recording
from tests.conftest import fixture

MiB = 1024 * 1024

_QUIESCENT = """
import time
data = [str(i) * 3 for i in range(400000)]
blob = bytearray(b"x" * (40 * 1024 * 1024))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def quiescent() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", _QUIESCENT], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    yield proc
    proc.kill()
    proc.wait()


def attach(memscope_bin: str, pid: int, path: str, duration: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [memscope_bin, "attach", str(pid), "-q", "-o", path, "-i", "0.1", "--duration", str(duration)],
        capture_output=True, text=True, timeout=60,
    )


def smem_uss_pss(pid: int) -> tuple[int, int]:
    out = subprocess.run(["smem", "-H", "-c", "pid uss pss", "-P", "."], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and int(fields[0]) == pid:
            return int(fields[1]) * 1024, int(fields[2]) * 1024
    raise AssertionError(f"smem did not list {pid}")


def test_quiescent_process_agrees_with_psutil_and_smem(
    memscope_bin: str, quiescent: subprocess.Popen[str], tmp_path: os.PathLike[str]
) -> None:
    path = os.path.join(str(tmp_path), "q.memscope")
    done = attach(memscope_bin, quiescent.pid, path, 1.0)
    assert done.returncode == 0, done.stderr
    summary = build_summary(open_recording(path))
    (proc,) = summary.processes
    assert proc.role == "root" and proc.pid == quiescent.pid
    uss, pss = proc.last.uss, proc.last.pss
    assert uss is not None and pss is not None and uss > 60 * MiB
    full = psutil.Process(quiescent.pid).memory_full_info()
    assert uss == pytest.approx(full.uss, rel=0.02)
    assert pss == pytest.approx(full.pss, rel=0.02)
    if shutil.which("smem") is None:
        pytest.skip("Debian's smem is not installed (.ci/run installs it)")
    smem_uss, smem_pss = smem_uss_pss(quiescent.pid)
    assert uss == pytest.approx(smem_uss, rel=0.02)
    assert pss == pytest.approx(smem_pss, rel=0.02)


@pytest.mark.slow
def test_attach_follows_the_tree(memscope_bin: str, tmp_path: os.PathLike[str]) -> None:
    # GIVEN a pre-fork workload already running
    target = subprocess.Popen(
        [sys.executable, fixture("preload_list"), "--workers", "3", "--size", "500000",
         "--delay", "0.3", "--hold", "2.5"], stdout=subprocess.PIPE, text=True)
    assert target.stdout is not None
    events = [json.loads(target.stdout.readline()) for _ in range(4)]
    worker_pids = {e["pid"] for e in events if e["event"] == "forked"}
    assert len(worker_pids) == 3
    path = os.path.join(str(tmp_path), "a.memscope")
    try:
        # WHEN memscope attaches until the root exits
        done = attach(memscope_bin, target.pid, path, 30)
        assert done.returncode == 0, done.stderr
    finally:
        target.wait(timeout=30)
    # THEN it recorded the root and every worker, which copied what they touched
    summary = build_summary(open_recording(path))
    roles = {p.pid: p.role for p in summary.processes}
    assert roles[target.pid] == "root"
    assert {pid for pid, role in roles.items() if role == "worker"} == worker_pids
    assert summary.mode == "attach"
    assert all(p.last.uss is not None for p in summary.workers)
    assert max(p.peak.uss or 0 for p in summary.workers) > 12 * MiB
    assert summary.duration_s < 10  # stopped at the root's exit, not at --duration
