"""CI regression gate: rules + recordings (+ a baseline) -> verdicts and an exit code.

    report = check_recordings(["run.memscope"], ["worker.uss.peak <= 200MiB"])
    report.exit_code   # 0 all rules hold, 1 a rule is broken, 2 a rule could not be checked
"""

from __future__ import annotations

from collections.abc import Sequence

from memscope.check.baseline import Baseline, load_baseline, save_baseline
from memscope.check.evaluate import CheckReport, Result, evaluate, plan_rules
from memscope.check.metrics import METRICS, SELECTORS, MetricSource, MissingMetric
from memscope.check.rules import Rule, load_config, parse_rule
from memscope.quantity import Dimension, parse_value
from memscope.recording import open_recording

__all__ = [
    "DEFAULT_TOLERANCE",
    "METRICS",
    "SELECTORS",
    "Baseline",
    "CheckReport",
    "MetricSource",
    "MissingMetric",
    "Result",
    "Rule",
    "check_recordings",
    "evaluate",
    "load_baseline",
    "load_config",
    "load_sources",
    "parse_rule",
    "parse_tolerance",
    "plan_rules",
    "save_baseline",
]

DEFAULT_TOLERANCE = "10%"


def parse_tolerance(text: str) -> float:
    return parse_value(text, Dimension.RATIO, context="--tolerance")


def load_sources(paths: Sequence[str]) -> list[MetricSource]:
    sources = []
    for path in paths:
        rec = open_recording(path)
        try:
            sources.append(MetricSource(rec))
        finally:
            rec.close()
    return sources


def check_recordings(
    paths: Sequence[str],
    rules: Sequence[str],
    baseline: str | None = None,
    tolerance: str = DEFAULT_TOLERANCE,
    allow_missing: bool = False,
) -> CheckReport:
    """Judge `rules` on the recordings (the median over several); raise on bad rules/input."""
    base = load_baseline(baseline) if baseline else None
    planned = plan_rules(rules, base, parse_tolerance(tolerance))
    return evaluate(planned, load_sources(paths), base, allow_missing)
