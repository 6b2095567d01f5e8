"""Environment-based bootstrap for `memscope run --trace-sites[=FRAMES]`.

memscope prepends memscope/agent/_bootstrap (holding a chaining sitecustomize.py) to PYTHONPATH
of the spawned command and sets the MEMSCOPE_* variables; every CPython 3.8+ process of the tree,
forked or exec'd, then runs the agent. Targets started with -I, -E or -S ignore the bootstrap.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Mapping

from memscope.agent import (
    BOOTSTRAP_DIR,
    ENV_ENABLE,
    ENV_FRAMES,
    ENV_RUN_DIR,
    ENV_TRACE_WORKERS,
)
from memscope.agent._owner import alive, owner_of, start_ticks

__all__ = ["DEFAULT_FRAMES", "agent_env", "clean_stale_run_dirs", "make_run_dir", "remove_run_dir"]

DEFAULT_FRAMES = 16


def make_run_dir(parent: str | None = None) -> str:
    """A fresh private (0700) directory for agent sockets and injected scripts, named after
    this process (memscope-PID-STARTTICKS-*: agents watch that owner, see agent/_owner.py).
    Run directories left behind by memscope processes that died are removed first."""
    parent = parent if parent is not None else tempfile.gettempdir()
    clean_stale_run_dirs(parent)
    pid = os.getpid()
    path = tempfile.mkdtemp(prefix=f"memscope-{pid}-{start_ticks(pid) or 0}-", dir=parent)
    os.chmod(path, 0o700)
    return path


def clean_stale_run_dirs(parent: str) -> list[str]:
    """Remove this user's run directories in `parent` whose owner is dead; returns them.
    Directories of live owners, of other users, and any other entry are left alone."""
    removed: list[str] = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        owner = owner_of(name)
        if owner is None or alive(*owner):
            continue
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_run_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def agent_env(
    base: Mapping[str, str], run_dir: str, frames: int, trace_workers: bool = False
) -> dict[str, str]:
    """`base` plus what makes every Python process of the tree load the agent.

    frames = 0 loads the agent for the channel only (no tracemalloc)."""
    env = dict(base)
    old = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + old if old else "")
    env[ENV_ENABLE] = "1"
    env[ENV_RUN_DIR] = run_dir
    env[ENV_FRAMES] = str(max(0, int(frames)))
    env[ENV_TRACE_WORKERS] = "1" if trace_workers else "0"
    return env
