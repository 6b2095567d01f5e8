"""Errors of the agent host side; each carries exit code 2 (usage or environment problem)."""

from __future__ import annotations

try:
    from memscope.errors import MemscopeError
except ImportError:  # pragma: no cover - foundation not merged yet

    class MemscopeError(Exception):  # type: ignore[no-redef]
        def __init__(self, message: str, exit_code: int = 2) -> None:
            super().__init__(message)
            self.message = message
            self.exit_code = exit_code


__all__ = [
    "AgentError",
    "GdbMissing",
    "InjectError",
    "MemscopeError",
    "PtraceDenied",
    "RemoteDebugDisabled",
]


class AgentError(MemscopeError):
    """The agent's channel failed: unreachable, malformed or oversized answer, or an error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


class InjectError(MemscopeError):
    """Injecting the agent into a running interpreter failed (the target keeps running)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


class GdbMissing(InjectError):
    pass


class PtraceDenied(InjectError):
    pass


class RemoteDebugDisabled(InjectError):
    pass
