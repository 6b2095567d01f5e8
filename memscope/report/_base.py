"""One small interface for every output format, looked up by name (pyinstrument-style)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, TextIO

from memscope.analysis.summary import Summary
from memscope.errors import UsageError
from memscope.recording import Recording

__all__ = ["REPORTERS", "ReportData", "Reporter", "get_reporter", "register"]


@dataclass(frozen=True, slots=True)
class ReportData:
    """What a reporter is built from: the pure summary, and the recording for long-form data."""

    summary: Summary
    recording: Recording


class Reporter(Protocol):
    name: ClassVar[str]
    #: file suffix used when the output path is chosen for the user
    suffix: ClassVar[str]

    def render(self, data: ReportData, out: TextIO) -> None: ...


REPORTERS: dict[str, type[Reporter]] = {}

R = Callable[[type[Reporter]], type[Reporter]]


def register(cls: type[Reporter]) -> type[Reporter]:
    REPORTERS[cls.name] = cls
    return cls


def get_reporter(name: str) -> Reporter:
    try:
        return REPORTERS[name]()
    except KeyError:
        known = ", ".join(sorted(REPORTERS))
        raise UsageError(f"unknown report format {name!r} (known: {known})") from None
