"""`--fail-if` rules of `memscope diff`, in the check rule language (memscope/check/rules.py).

    KEY OP CHANGE          copied.total > -50%        worker.uss.peak > 10MiB
                           copied.type.int >= 0B      tree.pss.peak > 5%

KEY is a diff row's key (`memscope diff --format json` lists them; a `tree.` prefix is
optional); OP one of the check operators; CHANGE a percentage (the relative change
(AFTER - BEFORE) / BEFORE) or a quantity with a unit (the absolute change, a size or for
`leak.slope` a rate). The rule *fails* when the comparison holds, so `copied.total > -50%`
fails unless copying at least halved. A KEY absent from both sides is an error (exit 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from memscope.check.rules import OPERATORS, _split
from memscope.diff.compare import Diff, DiffRow
from memscope.errors import UsageError
from memscope.quantity import Dimension, format_value, parse_value

__all__ = ["FailRule", "Verdict", "evaluate", "parse_fail_rule"]


@dataclass(frozen=True, slots=True)
class FailRule:
    text: str
    key: str
    op: str
    limit: float
    relative: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: FailRule
    row: DiffRow
    measured: float  # the relative or absolute change the rule compared
    failed: bool

    def describe(self) -> str:
        dim = Dimension.RATIO if self.rule.relative else (
            Dimension.RATE if self.row.unit == "bytes/s" else Dimension.BYTES)
        shown = "∞" if math.isinf(self.measured) else format_value(self.measured, dim)
        word = "FAIL" if self.failed else "ok"
        return f"{word}: {self.rule.text} (change {shown})"


def parse_fail_rule(text: str) -> FailRule:
    lhs, op, rhs = _split(text)
    key = lhs[len("tree."):] if lhs.startswith("tree.") else lhs
    if rhs.strip().endswith("%"):
        return FailRule(text.strip(), key, op, parse_value(rhs, Dimension.RATIO, context=text),
                        relative=True)
    dim = Dimension.RATE if key.endswith("leak.slope") else Dimension.BYTES
    return FailRule(text.strip(), key, op, parse_value(rhs, dim, context=text), relative=False)


def evaluate(diff: Diff, rules: list[FailRule]) -> list[Verdict]:
    rows = {r.key: r for r in diff.rows}
    out = []
    for rule in rules:
        row = rows.get(rule.key)
        if row is None:
            known = ", ".join(k for k in rows if "." in k and k.count(".") <= 2)[:300]
            raise UsageError(f"--fail-if {rule.text!r}: no figure {rule.key!r} in either"
                             f" recording (e.g. {known})")
        if rule.relative:
            rel = row.relative
            measured = rel if rel is not None else (math.inf if row.change > 0 else 0.0)
        else:
            measured = row.change
        out.append(Verdict(rule, row, measured, OPERATORS[rule.op](measured, rule.limit)))
    return out
