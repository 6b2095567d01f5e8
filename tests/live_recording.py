"""Helpers for end-to-end tests that watch a recording while `memscope run` writes it: they
wait on what the recording shows (an event), never on a fixed hold, then stop the run with
SIGTERM, which memscope forwards to the command."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from memscope.cow.scan import QUICK_TARGET


def query(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]] | None:
    """Rows of `sql` on the recording being written, or None while it cannot be read yet
    (not created, or between two writes)."""
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return conn.execute(sql, tuple(params)).fetchall()
    except sqlite3.Error:
        return None


def full_scan_since(path: Path, pid: int, since: float) -> bool:
    """Whether `pid` has a full (typed) COW scan that started at or after `since`."""
    rows = query(path, "SELECT 1 FROM cow_scans WHERE pid = ? AND t >= ? AND target != ?"
                       " LIMIT 1", (pid, since, QUICK_TARGET))
    return bool(rows)


def stop_when(
    proc: subprocess.Popen[str], done: Callable[[], bool], what: str, timeout: float = 240.0,
) -> tuple[str, str]:
    """Poll `done()` until it holds, then SIGTERM `memscope run` and return its (stdout,
    stderr). Fails if memscope ends first or `timeout` passes; never leaves it running."""
    try:
        deadline = time.monotonic() + timeout
        while not done():
            assert proc.poll() is None, f"memscope ended before {what}: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
