"""Judging rules against one or more recordings (several: `--repeat`, the median is judged).

Verdicts: "pass", "fail" (a limit is broken, exit 1) and "error" (the recording or baseline
lacks what the rule needs, exit 2). Errors outrank failures: a gate that cannot judge every
rule is misconfigured.

A rule never passes on data it cannot see: when a selected process has no value for the metric,
or its COW scan is stale (older than its last significant USS growth, analysis.staleness), the
rule is an "error" naming those processes, unless `allow_missing` (`--allow-missing`) asks to
judge the processes that have a current value.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from memscope.check.baseline import IMPLICIT_KEYS, Baseline
from memscope.check.metrics import MetricSource, MissingMetric, process_label
from memscope.check.rules import BaselineLimit, Rule, parse_rule
from memscope.errors import EXIT_INPUT, EXIT_LIMIT, UsageError
from memscope.quantity import Dimension, format_value

__all__ = ["CheckReport", "Result", "evaluate", "plan_rules"]


@dataclass(slots=True)
class Result:
    rule: Rule
    verdict: str  # "pass" | "fail" | "error"
    measured: float | None = None
    limit: float | None = None
    process: str | None = None
    runs: list[float] = field(default_factory=list)  # one value per recording
    message: str = ""
    hint: str | None = None

    @property
    def dimension(self) -> Dimension:
        return self.rule.metric.dimension

    def describe(self) -> str:
        """One line: what was measured against what, and where."""
        if self.verdict == "error":
            return f"{self.rule.text}: {self.message}"
        measured = format_value(self.measured, self.dimension)
        limit = format_value(self.limit, self.dimension)
        word = "holds" if self.verdict == "pass" else "broken"
        where = f" in {self.process}" if self.process else ""
        runs = ""
        if len(self.runs) > 1:
            runs = f" (median of {', '.join(format_value(v, self.dimension) for v in self.runs)})"
        return f"{self.rule.text} {word}: measured {measured}{runs}{where}, limit {limit}"


@dataclass(slots=True)
class CheckReport:
    results: list[Result]
    recordings: list[str]
    baseline: str | None = None

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.verdict == "fail"]

    @property
    def errors(self) -> list[Result]:
        return [r for r in self.results if r.verdict == "error"]

    @property
    def exit_code(self) -> int:
        if self.errors:
            return EXIT_INPUT
        return EXIT_LIMIT if self.failed else 0


def plan_rules(texts: Sequence[str], baseline: Baseline | None, tolerance: float) -> list[Rule]:
    """Parse rules; with a baseline, add `KEY <= baseline + tolerance` for every implicit key
    the baseline holds that no explicit rule already compares to the baseline."""
    rules = [parse_rule(t) for t in texts]
    uses_baseline = [r for r in rules if isinstance(r.limit, BaselineLimit)]
    if uses_baseline and baseline is None:
        raise UsageError(f"rule {uses_baseline[0].text!r} compares to a baseline: pass --baseline")
    if baseline is not None:
        covered = {r.key for r in uses_baseline}
        for key in IMPLICIT_KEYS:
            if key in baseline.values and key not in covered:
                rules.append(parse_rule(f"{key} <= baseline + {tolerance * 100:g}%"))
    if not rules:
        raise UsageError(
            "no rules to check",
            hint="pass --rule 'worker.uss.peak <= 200MiB', --baseline BASE.json, or set"
            " rules in pyproject.toml [tool.memscope.check]",
        )
    return rules


_MAX_NAMED = 4


def _missing_message(rule: Rule, missing: Sequence[str]) -> str:
    named = "; ".join(missing[:_MAX_NAMED])
    more = f"; and {len(missing) - _MAX_NAMED} more" if len(missing) > _MAX_NAMED else ""
    return (
        f"{len(missing)} selected process(es) have no current value for {rule.key}, so the rule"
        f" cannot pass: {named}{more}"
    )


def _judge(
    rule: Rule,
    sources: Sequence[MetricSource],
    baseline: Baseline | None,
    allow_missing: bool = False,
) -> Result:
    limit: float
    if isinstance(rule.limit, BaselineLimit):
        assert baseline is not None
        base = baseline.values.get(rule.key)
        if base is None:
            return Result(rule, "error", message=f"baseline {baseline.path} has no {rule.key}",
                          hint="save the baseline from a recording that holds this metric")
        limit = rule.limit.resolve(base)
    else:
        limit = rule.limit
    worst = rule.worst(limit)
    try:
        found = [src.measure(rule.selector, rule.metric, worst) for src in sources]
    except MissingMetric as exc:
        return Result(rule, "error", limit=limit, message=exc.message, hint=exc.hint)
    runs = [m.value for m in found]
    measured = statistics.median(runs)
    nearest = min(found, key=lambda m: abs(m.value - measured))
    result = Result(
        rule,
        "pass" if rule.holds(measured, limit) else "fail",
        measured=measured,
        limit=limit,
        process=process_label(nearest.process) if nearest.process else None,
        runs=runs,
    )
    missing = max((m.missing for m in found), key=len)
    if missing and not allow_missing:
        result.verdict = "error"
        result.message = _missing_message(rule, missing)
        result.hint = (
            "record longer, rescan COW more often (--cow-interval), select fewer processes,"
            " or pass --allow-missing to judge only the processes with a current value"
        )
    elif missing:
        result.message = f"judged without {len(missing)} process(es) (--allow-missing): " + (
            "; ".join(missing[:_MAX_NAMED])
        )
    return result


def evaluate(
    rules: Sequence[Rule],
    sources: Sequence[MetricSource],
    baseline: Baseline | None = None,
    allow_missing: bool = False,
) -> CheckReport:
    if not sources:
        raise UsageError("no recording to check")
    return CheckReport(
        results=[_judge(rule, sources, baseline, allow_missing) for rule in rules],
        recordings=[s.path for s in sources],
        baseline=baseline.path if baseline else None,
    )
