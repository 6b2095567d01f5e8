"""Reporters: text, json, ... each registered by name behind `Reporter`."""

from memscope.report import (  # noqa: F401  (registers the formats and sections)
    cow_section,
    csv_report,
    framework_section,
    html,
    json_report,
    leak_section,
    mprof,
    prometheus,
    steady_section,
    text,
)
from memscope.report._base import REPORTERS, ReportData, Reporter, get_reporter, register

__all__ = ["REPORTERS", "ReportData", "Reporter", "get_reporter", "register"]
