"""Reporters: text, json, ... each looked up by name behind `Reporter` (see REPORTERS)."""

from memscope.report._base import REPORTERS, ReportData, Reporter, get_reporter

__all__ = ["REPORTERS", "ReportData", "Reporter", "get_reporter"]
