"""Tying a `run` target's lifetime to memscope's: subreaper and parent-death signal.

* memscope becomes a child subreaper (PR_SET_CHILD_SUBREAPER): a descendant whose parent dies
  (a double fork, a daemonising server) is reparented to memscope instead of init, so it
  stays in the recorded tree; memscope reaps it (memscope.tree).
* The command gets PR_SET_PDEATHSIG in the forked child before exec: if memscope dies, even by
  SIGKILL, the kernel sends the command `--kill-signal` (default SIGTERM, as systemd's
  KillSignal). PDEATHSIG fires when the parent *thread* exits, so the command must be spawned
  from the main thread, which lives as long as memscope. The kernel sends it again at each
  reparenting: when memscope is killed, the command is handed to memscope's other threads
  as they die, one by one, so it can get the signal more than once (as with any parent-death
  signal of a multi-threaded parent). `--keep-running` opts out.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

import click

__all__ = ["become_subreaper", "child_setup", "parse_signal"]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> bool:
    return int(_libc.prctl(option, value, 0, 0, 0)) == 0


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants (Linux 3.4+); False if refused."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def child_setup(kill_signal: int | None) -> Callable[[], None]:
    """preexec_fn for the command: own process group (as `timeout`), and the parent-death
    signal unless `kill_signal` is None."""
    parent = os.getpid()

    def setup() -> None:
        os.setpgrp()
        if kill_signal is not None:
            _prctl(PR_SET_PDEATHSIG, kill_signal)
            if os.getppid() != parent:  # memscope died before the prctl took effect
                os.kill(os.getpid(), kill_signal)

    return setup


def parse_signal(ctx: click.Context | None, param: click.Parameter | None,
                 value: object) -> int:
    """Click callback: a signal by name (TERM, SIGTERM) or number."""
    text = str(value).strip().upper()
    try:
        number = int(text) if text.isdigit() else signal.Signals[
            text if text.startswith("SIG") else f"SIG{text}"].value
    except (KeyError, ValueError):
        raise click.BadParameter(f"{value!r} is not a signal name or number") from None
    if not 0 < number < signal.NSIG:
        raise click.BadParameter(f"{value!r} is not a valid signal number")
    return number
