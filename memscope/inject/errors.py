"""Errors of the agent host side; each exits with code 2 (EXIT_INPUT), the target unharmed."""

from __future__ import annotations

from memscope.errors import InputError

__all__ = ["AgentError", "InjectError", "PtraceDenied", "RemoteDebugDisabled"]


class AgentError(InputError):
    """The agent's channel failed: unreachable, malformed or oversized answer, or an error."""


class InjectError(InputError):
    """Injecting the agent into a running interpreter failed (the target keeps running)."""


class PtraceDenied(InjectError):
    """The kernel refused ptrace (Yama ptrace_scope, another user, missing CAP_SYS_PTRACE)."""


class RemoteDebugDisabled(InjectError):
    """The target opted out with PYTHON_DISABLE_REMOTE_DEBUG or -X disable_remote_debug."""
