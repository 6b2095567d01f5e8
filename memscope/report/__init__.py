"""Reporters: text, json, ... each registered by name behind `Reporter`."""

from memscope.report import cow_section, json_report, text  # noqa: F401  (registers them)
from memscope.report._base import REPORTERS, ReportData, Reporter, get_reporter, register

__all__ = ["REPORTERS", "ReportData", "Reporter", "get_reporter", "register"]
