"""Helpers for the exporter tests: a stdin-driven process tree and a scrape parser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from memscope.metrics import MetricsFeed, SnapshotBox, registry_for
from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter
from memscope.sampler import Sampler, TickContext
from memscope.tree import ProcessTree

HERE = Path(__file__).resolve().parent
PYENV = Path("/root/.pyenv/versions")
PYTHONS = ["3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"]
MiB = 1024 * 1024

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def python_for(version: str) -> str:
    path = PYENV / version / "bin" / "python3"
    if not path.exists():
        pytest.skip(f"CPython {version} not installed at {path}")
    return str(path)


class Forker:
    """tests/metrics/forker.py under `python`: a root whose workers come and go on request."""

    def __init__(self, python: str = sys.executable, *args: str) -> None:
        self.proc = subprocess.Popen(
            [python, str(HERE / "forker.py"), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid

    def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def fork(self, mib: int) -> int:
        return int(self._ask(f"fork {mib}"))

    def kill(self, pid: int) -> None:
        assert self._ask(f"kill {pid}") == f"reaped {pid}"

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("exit\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def parse(text: str) -> Series:
    """Exposition text -> {(sample name, sorted labels): value}."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(registry: CollectorRegistry) -> Series:
    return parse(generate_latest(registry).decode())


def by_slot(series: Series, name: str, role: str) -> dict[int, float]:
    """{slot: value} of one per-process metric for one role."""
    found: dict[int, float] = {}
    for (sample, labels), value in series.items():
        if sample == name and dict(labels)["role"] == role:
            found[int(dict(labels)["slot"])] = value
    return found


class Live:
    """A sampler over `root` writing to a temp recording, with the exporter hooked in."""

    def __init__(self, root: int, path: Path) -> None:
        self.box = SnapshotBox()
        self.feed = MetricsFeed(self.box, mode="attach")
        self.writer = RecordingWriter(str(path), {"mode": "attach"})
        procfs = ProcFS()
        tree = ProcessTree(procfs, root, exclude={os.getpid()})
        self.sampler = Sampler(procfs, tree, self.writer, hooks=[self.feed])
        self.registry = registry_for(self.box.get)

    def tick(self) -> tuple[TickContext, Series]:
        ctx = self.sampler.tick()
        return ctx, scrape(self.registry)

    def record_id(self, pid: int) -> int:
        return next(m.record_id for m in self.sampler.tree.members.values() if m.pid == pid)

    def close(self) -> None:
        self.writer.close()
