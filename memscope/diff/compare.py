"""BEFORE vs AFTER: one row per figure, its change, and whether the change is within noise.

Each side is one recording or several of the same workload (e.g. made with --repeat). A side's
value is the mean over its recordings, and its spread the range (max - min).

A change counts as noise (`within_noise`) when |after - before| is at most the largest of:
- NOISE_FLOOR[unit]: 1 MiB for sizes, 1 KiB/s for leak rates (below what one page-granular
  smaps reading or a short leak fit resolves);
- NOISE_RELATIVE (5 %) of the larger of the two values: the run-to-run wobble of USS/PSS
  measured on the fixtures (docs/diff.md);
- the spread of BEFORE plus the spread of AFTER, when a side has several recordings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from memscope.diff.source import Figures

__all__ = ["NOISE_FLOOR", "NOISE_RELATIVE", "Diff", "DiffRow", "compare", "unit_of"]

NOISE_FLOOR = {"bytes": float(1 << 20), "bytes/s": 1024.0}
NOISE_RELATIVE = 0.05


def unit_of(metric: str) -> str:
    return "bytes/s" if metric.startswith("leak.") else "bytes"


@dataclass(frozen=True, slots=True)
class DiffRow:
    scope: str
    metric: str
    unit: str
    before: float | None
    after: float | None
    before_spread: float
    after_spread: float
    within_noise: bool

    @property
    def key(self) -> str:
        """The name rules use: the metric alone for the tree, else SCOPE.METRIC."""
        return self.metric if self.scope == "tree" else f"{self.scope}.{self.metric}"

    @property
    def change(self) -> float:
        return (self.after or 0.0) - (self.before or 0.0)

    @property
    def relative(self) -> float | None:
        """Change as a fraction of BEFORE (None when BEFORE is zero or absent)."""
        return self.change / self.before if self.before else None

    @property
    def group(self) -> str:
        parts = self.metric.split(".")
        return ".".join(parts[:2]) if parts[0] == "copied" and len(parts) > 2 else parts[0]


@dataclass(frozen=True, slots=True)
class Diff:
    before: list[str]
    after: list[str]
    rows: list[DiffRow]

    def savings(self, prefix: str, limit: int = 5) -> list[DiffRow]:
        """Tree rows under `prefix` (e.g. "copied.type.") that fell most, beyond noise."""
        rows = [r for r in self.rows if r.scope == "tree" and r.metric.startswith(prefix)
                and r.change < 0 and not r.within_noise]
        return sorted(rows, key=lambda r: r.change)[:limit]


def _side(figures: Sequence[Figures], key: tuple[str, str]) -> tuple[float | None, float]:
    values = [f.get(key, 0.0) for f in figures]
    if not any(key in f for f in figures):
        return None, 0.0
    return sum(values) / len(values), max(values) - min(values)


def _order(key: tuple[str, str]) -> tuple[int, str, int, str]:
    """Tree, then roles, then matched processes by ordinal (worker[2] before worker[10])."""
    scope, metric = key
    role, _, rest = scope.partition("[")
    rank = 0 if scope == "tree" else 2 if rest else 1
    return rank, role, int(rest.rstrip("]") or 0), metric


def compare(before: Sequence[Figures], after: Sequence[Figures],
            before_paths: Sequence[str], after_paths: Sequence[str]) -> Diff:
    keys = sorted({k for f in [*before, *after] for k in f}, key=_order)
    rows = []
    for key in keys:
        b, b_spread = _side(before, key)
        a, a_spread = _side(after, key)
        unit = unit_of(key[1])
        change = abs((a or 0.0) - (b or 0.0))
        noise = max(NOISE_FLOOR[unit], NOISE_RELATIVE * max(abs(a or 0.0), abs(b or 0.0)),
                    b_spread + a_spread)
        rows.append(DiffRow(key[0], key[1], unit, b, a, b_spread, a_spread, change <= noise))
    return Diff(list(before_paths), list(after_paths), rows)
