"""The procfs error types: every failure to read or understand a /proc file is one of these."""

from __future__ import annotations

__all__ = ["MalformedProcFile", "ProcfsError"]


class ProcfsError(Exception):
    def __init__(self, pid: int, message: str) -> None:
        super().__init__(message)
        self.pid = pid


class MalformedProcFile(ProcfsError):
    """The text of a /proc file is not in the kernel's format (truncated, garbled, or from a
    kernel that formats it differently). `pid` is 0 when the parser was not told the process."""

    def __init__(self, what: str, detail: str, pid: int = 0) -> None:
        super().__init__(pid, f"malformed /proc/PID/{what}: {detail}")
        self.what = what
