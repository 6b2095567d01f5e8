"""Helpers for the check tests: run the memscope CLI, record a fixture workload."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, TARGET_VERSIONS, target_python

__all__ = ["DATA", "FIXTURES", "LEAKY", "PRELOAD", "TARGET_VERSIONS", "Recorded", "events_in",
           "memscope", "python_for", "record"]

FIXTURES = Path(REPO) / "fixtures"
DATA = Path(__file__).resolve().parent / "data"
MAIN = "import sys; from memscope.cli import main; sys.argv[0] = 'memscope'; main()"
MiB = 1 << 20

#: preload_list at a CI-friendly size: 300k heap ints (~9 MiB of int pages copied per worker
#: when touched). The regression is iterating the list; its twin (--no-touch) does not.
PRELOAD = ("--workers", "2", "--size", "300000", "--delay", "0.3", "--hold", "0.5")
#: leaky_worker: 2 workers, only the first leaks 64 KiB x 20/s for 2 s (2.5 MiB).
LEAKY = ("--workers", "2", "--leaky-workers", "1", "--size", "1000", "--rate", "20",
         "--duration", "2", "--delay", "0.2", "--hold", "0.3")


def python_for(version: str) -> str:
    path = target_python(version)
    if path is None:
        pytest.skip(f"CPython {version} is not installed")
    return path


def memscope(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    """Run the memscope CLI in a fresh interpreter (as CI would)."""
    return subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@dataclass
class Recorded:
    path: str
    events: list[dict[str, Any]]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


def events_in(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"')]


def record(path: Path, script: str, *args: str, python: str = sys.executable) -> Recorded:
    # Without COW scans: the missing-metric and baseline tests rely on recordings lacking
    # them (tests/cow covers scans, test_cow_metrics_read_from_cow_scans_table the contract).
    done = memscope("run", "-q", "-i", "0.1", "--cow-interval", "0", "-o", str(path), "--",
                    python, str(FIXTURES / script), *args)
    assert done.returncode == 0, done.stderr
    return Recorded(str(path), events_in(done.stdout))
