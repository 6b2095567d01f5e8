"""Errors that end a command. Each carries its exit code; `memscope.cli.main` maps them once.

Exit codes (documented in the README):
  0    success (`run` instead exits with the command's own status)
  1    a `check` limit was exceeded
  2    usage or input error: bad option, unknown PID, denied access, unreadable recording
  127  `run`: the command was not found or could not be executed
"""

from __future__ import annotations

__all__ = [
    "EXIT_INPUT",
    "EXIT_LIMIT",
    "EXIT_NOT_FOUND",
    "CommandNotFound",
    "InputError",
    "MemscopeError",
    "RecordingError",
    "TargetError",
    "UsageError",
]

EXIT_LIMIT = 1
EXIT_INPUT = 2
EXIT_NOT_FOUND = 127


class MemscopeError(Exception):
    """An error the user can act on: printed as one line, then exit with `exit_code`."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(MemscopeError):
    """Options that cannot work together or values out of range."""


class InputError(MemscopeError):
    """Input that exists but cannot be used."""


class TargetError(InputError):
    """A PID that does not exist, is a zombie, or cannot be read."""


class RecordingError(InputError):
    """A file that is not a memscope recording, is truncated, or is from a newer memscope."""


class CommandNotFound(MemscopeError):
    exit_code = EXIT_NOT_FOUND
