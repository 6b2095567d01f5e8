"""Reporters: text, json, ... each registered by name behind `Reporter`."""

from memscope.report import cow_section, json_report, leak_section, text  # noqa: F401
from memscope.report._base import REPORTERS, ReportData, Reporter, get_reporter, register

__all__ = ["REPORTERS", "ReportData", "Reporter", "get_reporter", "register"]
