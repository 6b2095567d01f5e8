"""Reporters: text, json, ... each registered by name behind `Reporter`."""

from memscope.report import (  # noqa: F401  (registers the formats)
    csv_report,
    html,
    json_report,
    mprof,
    prometheus,
    text,
)
from memscope.report._base import REPORTERS, ReportData, Reporter, get_reporter, register

__all__ = ["REPORTERS", "ReportData", "Reporter", "get_reporter", "register"]
