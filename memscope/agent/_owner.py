"""Who owns a run directory, and whether that process still exists.

Runs inside targets (stdlib only, Python 3.8+ syntax) and in memscope, which names every run
directory memscope-PID-STARTTICKS-XXXXXXXX: the pid of the memscope process that made it and
that process's start time in clock ticks (field 22 of /proc/PID/stat), so that a recycled pid
is not mistaken for the owner.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Tuple

_RUN_DIR_RE = re.compile(r"^memscope-(\d+)-(\d+)-[^/]+$")


def owner_of(run_dir: str) -> Optional[Tuple[int, int]]:
    """(pid, start ticks) of the memscope that made `run_dir`, from its name; or None."""
    m = _RUN_DIR_RE.match(os.path.basename(run_dir.rstrip("/")))
    return (int(m.group(1)), int(m.group(2))) if m else None


def start_ticks(pid: int) -> Optional[int]:
    """Start time of a running (not zombie) `pid` in clock ticks; None if there is none."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return None if fields[0] in (b"Z", b"X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int, start: int) -> bool:
    """Whether process `pid` runs and is the one that started at `start` (clock ticks)."""
    return start_ticks(pid) == start
