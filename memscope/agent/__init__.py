"""memscope's in-process agent: code that runs INSIDE target interpreters.

Everything under this package is standard library only, Python 3.8+ syntax, and never raises
into its host. Targets load it without memscope being installed: the bootstrap
(`_bootstrap/sitecustomize.py`, put first on PYTHONPATH by `memscope run --trace-sites`) or the
script injected by `memscope attach` loads this package from its file path under the private
name ``_memscope_agent``. memscope itself imports the constants below as ``memscope.agent``.
"""

from __future__ import annotations

import os

__all__ = [
    "AGENT_DIR",
    "BOOTSTRAP_DIR",
    "ENV_ENABLE",
    "ENV_FRAMES",
    "ENV_RUN_DIR",
    "ENV_TRACE_WORKERS",
    "MAX_REQUEST_BYTES",
    "PRIVATE_NAME",
    "socket_path",
]

AGENT_DIR = os.path.dirname(os.path.abspath(__file__))
BOOTSTRAP_DIR = os.path.join(AGENT_DIR, "_bootstrap")
PRIVATE_NAME = "_memscope_agent"

# Environment contract between `memscope run` and the bootstrap. Nothing happens unless
# ENV_ENABLE is "1" and ENV_RUN_DIR names a private (0700, same uid) directory.
ENV_ENABLE = "MEMSCOPE_AGENT"
ENV_RUN_DIR = "MEMSCOPE_RUN_DIR"
ENV_FRAMES = "MEMSCOPE_TRACE_FRAMES"  # 0: channel only, no tracemalloc
ENV_TRACE_WORKERS = "MEMSCOPE_TRACE_WORKERS"  # "1": keep tracing in forked children

MAX_REQUEST_BYTES = 8 * 1024 * 1024  # largest request line the agent accepts


def socket_path(run_dir: str, pid: int) -> str:
    """The unix socket an agent with this pid listens on."""
    return os.path.join(run_dir, "agent-%d.sock" % pid)
