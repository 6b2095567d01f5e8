"""One small interface for every output format, looked up by name (pyinstrument-style)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Final, Protocol, TextIO

from memscope.analysis.summary import Summary
from memscope.errors import UsageError
from memscope.recording import Recording

__all__ = ["REPORTERS", "ReportData", "Reporter", "get_reporter"]


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


#: Every output format, in one place: its name -> "module:class" of the reporter. A reporter's
#: module is imported only when its format is asked for: a text report does not pay for the
#: HTML reporter's imports (~35 ms) nor the exporter's (prometheus_client, memscope.check).
REPORTERS: Final[Mapping[str, str]] = MappingProxyType({
    "csv": "memscope.report.csv_report:CsvReporter",
    "html": "memscope.report.html:HtmlReporter",
    "json": "memscope.report.json_report:JsonReporter",
    "mprof": "memscope.report.mprof:MprofReporter",
    "prometheus": "memscope.report.prometheus:PrometheusReporter",
    "text": "memscope.report.text:TextReporter",
})


def get_reporter(name: str) -> Reporter:
    """A new reporter for format `name` (its module imported now)."""
    try:
        module, cls = REPORTERS[name].split(":")
    except KeyError:
        known = ", ".join(sorted(REPORTERS))
        raise UsageError(f"unknown report format {name!r} (known: {known})") from None
    reporter: type[Reporter] = getattr(importlib.import_module(module), cls)
    return reporter()
