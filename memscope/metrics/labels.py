"""Bounded labels for per-process series: role, a stable slot, and a short command name.

Prometheus keeps one series per distinct label set, so a label that changes with every
process (the pid) makes a worker pool that recycles its workers grow without bound. Instead:

- ``role`` is the process's role (memscope.roles): ``root``, ``wrapper``, ``master``,
  ``worker`` or ``descendant``.
- ``slot`` is a small integer, per role: a new process takes the *lowest free* slot, and a
  process that exits frees its slot for the next one. A pool of N workers therefore uses
  slots 0..N-1 forever, however often its workers are recycled; the number of series is
  bounded by the peak number of processes alive at once. The root is always slot 0. The
  pid currently in a slot is exported as a value (``memscope_process_pid``), not a label.
- ``command`` is a name, never a command line: the program's base name (for an interpreter
  running a script or a module, the script's base name or the module), with every character
  outside ``[A-Za-z0-9_.:-]`` replaced by ``_`` and cut to ``MAX_COMMAND`` characters.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence

from memscope.roles import ROLES as ALL_ROLES

__all__ = ["MAX_COMMAND", "ROLES", "SlotAllocator", "command_name", "sanitise"]

MAX_COMMAND = 32
ROLES = ALL_ROLES

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_INTERPRETER = re.compile(r"^(python|pypy)[0-9.]*[a-z]?$")


def sanitise(name: str, limit: int = MAX_COMMAND) -> str:
    """Keep a label value short and boring: safe characters only, at most `limit` of them."""
    cleaned = _UNSAFE.sub("_", name)[:limit].strip("_")
    return cleaned or "unknown"


def _base(arg: str) -> str:
    # setproctitle-style titles ("gunicorn: worker [app]") keep only their first word.
    first = arg.strip().split(" ", 1)[0].rstrip(":")
    return first.rsplit("/", 1)[-1]


def command_name(cmdline: Sequence[str]) -> str:
    """The label for a process whose argv is `cmdline` (["?"] when it is unknown or empty)."""
    if not cmdline or not cmdline[0].strip():
        return "unknown"
    program = _base(cmdline[0])
    if _INTERPRETER.match(program):
        args = iter(cmdline[1:])
        for arg in args:
            if arg == "-m":
                module = next(args, "")
                return sanitise(module) if module else sanitise(program)
            if arg == "-c":
                break
            if arg.startswith("-"):
                if arg in ("-W", "-X", "-Q"):  # options that take a value
                    next(args, None)
                continue
            return sanitise(_base(arg) or program)
    return sanitise(program)


class SlotAllocator:
    """Per role, the lowest free slot index for each new key; freed slots are reused."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, tuple[str, int]] = {}
        self._used: dict[str, set[int]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slots

    def slot(self, key: Hashable, role: str) -> int:
        """The slot of `key` (assigning the lowest free one of `role` if it has none)."""
        held = self._slots.get(key)
        if held is not None and held[0] == role:
            return held[1]
        if held is not None:
            self.release(key)
        used = self._used.setdefault(role, set())
        index = 0
        while index in used:
            index += 1
        used.add(index)
        self._slots[key] = (role, index)
        return index

    def release(self, key: Hashable) -> None:
        held = self._slots.pop(key, None)
        if held is not None:
            self._used[held[0]].discard(held[1])

    def retain(self, keys: set[Hashable] | frozenset[Hashable]) -> None:
        """Release every key not in `keys` (the processes that are gone)."""
        for key in [k for k in self._slots if k not in keys]:
            self.release(key)
