"""Rules: `SELECTOR.METRIC OP VALUE`, parsed strictly (a wrong part is named, exit 2).

    worker.uss.peak <= 120MiB          tree.pss.peak <= 1.5GiB
    worker.cow.copied <= 8MiB          tree.cow.copied_ratio <= 10%
    process.leak.slope <= 1MiB/min     worker.uss.peak <= baseline + 10%
    tree.workers == 4

Rules may also live in pyproject.toml: `[tool.memscope.check] rules = ["..."]` (with optional
`baseline = "PATH"` and `tolerance = "10%"`).
"""

from __future__ import annotations

import operator
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memscope.check.metrics import METRICS, SELECTORS, Metric
from memscope.errors import InputError, UsageError
from memscope.quantity import Dimension, parse_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["OPERATORS", "BaselineLimit", "CheckConfig", "Rule", "load_config", "parse_rule"]

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}
_OP = re.compile(r"[<>=!]+")
_BASELINE = re.compile(r"^baseline\s*(?:(?P<sign>[+-])\s*(?P<delta>.+))?$")


@dataclass(frozen=True, slots=True)
class BaselineLimit:
    """`baseline [+|- DELTA]`: DELTA is a percentage of the baseline or an absolute value."""

    delta: float = 0.0
    relative: bool = True

    def resolve(self, base: float) -> float:
        return base * (1 + self.delta) if self.relative else base + self.delta

    def describe(self) -> str:
        if self.delta == 0:
            return "baseline"
        sign = "+" if self.delta > 0 else "-"
        if self.relative:
            return f"baseline {sign} {abs(self.delta) * 100:g}%"
        return f"baseline {sign} {abs(self.delta):g}"


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    selector: str
    metric: Metric
    op: str
    limit: float | BaselineLimit

    @property
    def key(self) -> str:
        """`selector.metric`, the name a baseline stores values under."""
        return f"{self.selector}.{self.metric.name}"

    def holds(self, measured: float, limit: float) -> bool:
        return OPERATORS[self.op](measured, limit)

    def worst(self, limit: float | None) -> Callable[[float], float]:
        """Key ordering candidate values so that the worst for this operator is the largest."""
        if self.op in ("<", "<="):
            return lambda v: v
        if self.op in (">", ">="):
            return lambda v: -v
        return lambda v: abs(v - (limit or 0.0))


def _split(text: str) -> tuple[str, str, str]:
    found = _OP.search(text)
    if found is None:
        raise UsageError(
            f"rule {text!r} has no operator (expected SELECTOR.METRIC OP VALUE,"
            " e.g. 'worker.uss.peak <= 200MiB')"
        )
    op = found.group()
    if op not in OPERATORS:
        raise UsageError(
            f"unknown operator {op!r} in rule {text!r} (known: {', '.join(OPERATORS)})"
        )
    lhs, rhs = text[: found.start()].strip(), text[found.end() :].strip()
    if not lhs or not rhs:
        raise UsageError(f"rule {text!r} needs SELECTOR.METRIC OP VALUE")
    return lhs, op, rhs


def parse_rule(text: str) -> Rule:
    lhs, op, rhs = _split(text)
    selector, _, metric_name = lhs.partition(".")
    if selector not in SELECTORS:
        raise UsageError(
            f"unknown selector {selector!r} in rule {text!r} (known: {', '.join(SELECTORS)})"
        )
    metric = METRICS.get(metric_name)
    if metric is None:
        known = ", ".join(n for n, m in METRICS.items() if selector in m.selectors)
        raise UsageError(
            f"unknown metric {metric_name!r} for {selector!r} in rule {text!r} (known: {known})"
        )
    if selector not in metric.selectors:
        raise UsageError(
            f"metric {metric_name!r} is not defined for selector {selector!r} in rule {text!r}"
            f" (use {' or '.join(metric.selectors)})"
        )
    base = _BASELINE.match(rhs)
    limit: float | BaselineLimit
    if base is None:
        limit = parse_value(rhs, metric.dimension, context=text)
    elif base["delta"] is None:
        limit = BaselineLimit()
    else:
        sign = -1.0 if base["sign"] == "-" else 1.0
        delta_text = base["delta"].strip()
        if delta_text.endswith("%"):
            limit = BaselineLimit(sign * parse_value(delta_text, Dimension.RATIO, context=text))
        else:
            delta = parse_value(delta_text, metric.dimension, context=text)
            limit = BaselineLimit(sign * delta, relative=False)
    return Rule(text=text.strip(), selector=selector, metric=metric, op=op, limit=limit)


@dataclass(frozen=True, slots=True)
class CheckConfig:
    rules: list[str]
    baseline: str | None = None
    tolerance: str | None = None


def load_config(path: str = "pyproject.toml") -> CheckConfig:
    """`[tool.memscope.check]` of a pyproject.toml; empty if the file or table is absent."""
    if not os.path.isfile(path):
        return CheckConfig(rules=[])
    try:
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read [tool.memscope.check]: {exc}") from None
    table = data.get("tool", {}).get("memscope", {}).get("check", {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: [tool.memscope.check] must be a table")
    rules = table.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise InputError(f"{path}: [tool.memscope.check] rules must be a list of strings")
    unknown = set(table) - {"rules", "baseline", "tolerance"}
    if unknown:
        raise InputError(
            f"{path}: unknown key(s) in [tool.memscope.check]: {', '.join(sorted(unknown))}"
            " (known: rules, baseline, tolerance)"
        )
    baseline, tolerance = table.get("baseline"), table.get("tolerance")
    for name, value in (("baseline", baseline), ("tolerance", tolerance)):
        if value is not None and not isinstance(value, str):
            raise InputError(f"{path}: [tool.memscope.check] {name} must be a string")
    return CheckConfig(rules=list(rules), baseline=baseline, tolerance=tolerance)
