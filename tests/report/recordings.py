"""Real recordings for the report tests: `memscope run` on a fixture, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import fixture

XSS = "<script>alert(1)</script>"


def memscope(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from memscope.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def record_preload_list(path: str, workers: int = 4, size: int = 300_000) -> str:
    """preload_list: the parent preloads `size` ints, each worker iterates them (copies)."""
    # No COW scans: these recordings test the USS views (with COW timelines the HTML
    # overview plots copied bytes instead; tests/cow covers scans end to end).
    proc = memscope("run", "-q", "-i", "0.1", "--cow-interval", "0", "-o", path, "--",
                    sys.executable, fixture("preload_list"), "--workers", str(workers),
                    "--size", str(size), "--delay", "0.3", "--hold", "0.6")
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(path)
    return path


def record_xss(path: str) -> str:
    """A process whose argv carries a script tag (and other markup), plus a forked child."""
    code = "import os,time;os.fork();time.sleep(.8)"  # short: the argv fits the table cell
    proc = memscope("run", "-q", "-i", "0.1", "-o", path, "--", sys.executable, "-c", code,
                    XSS, "\"'><img src=x onerror=alert(2)>", "{{DATA}}", "&amp;\u2028")
    assert proc.returncode == 0, proc.stderr
    return path
