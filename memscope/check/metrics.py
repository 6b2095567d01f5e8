"""Metrics a rule can name, and how each is read from a recording (the only place that knows).

Everything comes from the typed summary: peaks and last full samples of smaps_rollup, the COW
section (`Summary.cow`: `cow.copied` is a worker's *peak* scan, so a limit never passes on a
scan taken before the copying finished) and the leak section (`Summary.leaks`). Tree metrics
come from the tree totals. A metric no process has is a `MissingMetric` (exit 2), never a
silent pass; nor does a COW value whose latest scan is older than the process's last
significant USS growth (it is reported as missing, with the reason).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from memscope.analysis.summary import ProcessSummary, Summary, build_summary
from memscope.errors import InputError
from memscope.quantity import Dimension
from memscope.recording import Recording
from memscope.roles import MAIN_ROLES

__all__ = [
    "METRICS",
    "SELECTORS",
    "Measurement",
    "Metric",
    "MetricSource",
    "MissingMetric",
    "process_label",
]

SELECTORS = ("tree", "root", "worker", "process")
_COW_HINT = "record with COW scans enabled (memscope run/attach --cow-interval SECONDS)"
_LEAK_HINT = (
    "leak slopes come from memscope's leak analysis; record long enough for a slope"
    " (several samples after warm-up)"
)
_FULL_HINT = "no full smaps_rollup sample was taken: record longer or with a larger budget"

ProcessGetter = Callable[["MetricSource", ProcessSummary], float | None]
TreeGetter = Callable[["MetricSource"], float | None]


class MissingMetric(InputError):
    """The recording does not hold what a rule asks for (exit 2)."""


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    dimension: Dimension
    per_process: ProcessGetter | None  # for root, worker, process
    tree: TreeGetter | None  # for tree
    hint: str = _FULL_HINT

    @property
    def selectors(self) -> tuple[str, ...]:
        per = ("root", "worker", "process") if self.per_process else ()
        return (("tree",) if self.tree else ()) + per


@dataclass(frozen=True, slots=True)
class Measurement:
    """The judged value of one selector.metric, and which process it came from."""

    value: float
    process: ProcessSummary | None = None
    unmeasured: int = 0  # selected processes that lack the metric
    missing: tuple[str, ...] = ()  # why each unmeasured process has no (current) value


def process_label(p: ProcessSummary) -> str:
    """'worker pid 42 (python app.py -w 4)': paths shortened to their base names."""
    cmd = " ".join(os.path.basename(a) if "/" in a else a for a in p.cmdline) or "?"
    if len(cmd) > 40:
        cmd = cmd[:39] + "…"
    return f"{p.role} pid {p.pid} ({cmd})"


def _peak(field: str) -> ProcessGetter:
    return lambda _src, p: getattr(p.peak, field)


def _copied(src: MetricSource, p: ProcessSummary) -> float | None:
    cow = src.cow.get(p.id)
    return None if cow is None else float(cow[0])


def _copied_ratio(src: MetricSource, p: ProcessSummary) -> float | None:
    cow = src.cow.get(p.id)
    if cow is None or not cow[1]:
        return None
    return float(cow[0]) / float(cow[1])


def _steady(key: str) -> ProcessGetter:
    def get(_src: MetricSource, p: ProcessSummary) -> float | None:
        value = (p.extra.get("steady") or {}).get(key)
        return None if value is None else float(value)

    return get


def _slope(src: MetricSource, p: ProcessSummary) -> float | None:
    leak = src.leaks.get(p.id)
    if leak is None or leak.verdict == "insufficient-data":
        return None  # a fit the leak analysis itself does not trust is not a measurement
    slope = leak.slope_bytes_per_s
    return None if slope is None else float(slope)


def _tree_sum(getter: ProcessGetter) -> TreeGetter:
    def total(src: MetricSource) -> float | None:
        values = [v for p in src.summary.processes if (v := getter(src, p)) is not None]
        return sum(values) if values else None

    return total


def _tree_copied_ratio(src: MetricSource) -> float | None:
    rows = [c for c in src.cow.values() if c[1]]
    if not rows:
        return None
    return sum(float(c[0]) for c in rows) / sum(float(c[1]) for c in rows)


def _full_totals(field: str) -> TreeGetter:
    def total(src: MetricSource) -> float | None:
        if field == "peak_pss" and not any(p.full_samples for p in src.summary.processes):
            return None
        value = getattr(src.summary.totals, field)
        return float(value) if value else None

    return total


B, R, Q, N = Dimension.BYTES, Dimension.RATE, Dimension.RATIO, Dimension.COUNT
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("uss.peak", B, _peak("uss"), None),
        Metric("pss.peak", B, _peak("pss"), _full_totals("peak_pss")),
        Metric("rss.peak", B, _peak("rss"), _full_totals("peak_rss")),
        Metric("swap.peak", B, _peak("swap"), None),
        Metric("uss.last", B, lambda _s, p: p.last.uss, None),
        Metric("uss.steady_peak", B, _steady("peak_uss"), None),
        Metric("uss.steady_last", B, _steady("last_uss"), None),
        Metric("pss.steady_peak", B, _steady("peak_pss"), None),
        Metric("rss.steady_peak", B, _steady("peak_rss"), None),
        Metric("uss.growth", B, lambda _s, p: p.uss_growth, None),
        Metric("workers", N, None, lambda s: float(len(s.summary.workers))),
        Metric("processes", N, None, lambda s: float(len(s.summary.processes))),
        Metric("cow.copied", B, _copied, _tree_sum(_copied), _COW_HINT),
        Metric("cow.copied_ratio", Q, _copied_ratio, _tree_copied_ratio, _COW_HINT),
        Metric("leak.slope", R, _slope, _tree_sum(_slope), _LEAK_HINT),
    )
}


class MetricSource:
    """Everything rules read from one recording, computed once."""

    def __init__(self, rec: Recording, summary: Summary | None = None) -> None:
        self.path = rec.path
        self.summary: Summary = summary if summary is not None else build_summary(rec)
        cow = self.summary.cow
        #: process_id -> (copied, inherited) bytes of its peak scan
        self.cow: dict[int, tuple[int, int]] = {
            pid: (c.peak.copied_bytes, c.peak.inherited_bytes)
            for pid, c in (cow.processes.items() if cow is not None else ())
        }
        self.leaks = self.summary.leaks or {}
        #: why a process's latest COW scan is stale (analysis.staleness, in the summary)
        self.stale: dict[int, str] = {
            p.id: str(p.extra["cow_stale"]) for p in self.summary.processes
            if "cow_stale" in p.extra
        }

    def candidates(self, selector: str) -> list[ProcessSummary]:
        """The processes a selector names that could be measured: a process seen only by its
        fork and exit events (it lived between two ticks) has no sample to judge, which is
        not missing data."""
        processes = self.summary.processes
        if selector == "root":  # the root-equivalent: the master below any wrappers
            chosen = [p for p in processes if p.role in MAIN_ROLES]
        elif selector == "worker":
            chosen = self.summary.workers
        else:
            chosen = list(processes)
        return [p for p in chosen if p.samples]

    def measure(
        self, selector: str, metric: Metric, worst: Callable[[float], float]
    ) -> Measurement:
        """The value a rule judges: the tree's, or the worst selected process's.

        `worst` orders values so that the largest key is the worst one for the rule's operator.
        """
        name = f"{selector}.{metric.name}"
        if selector == "tree":
            assert metric.tree is not None
            value = metric.tree(self)
            if value is None:
                raise MissingMetric(f"{self.path}: recording lacks metric {name}", hint=metric.hint)
            return Measurement(value)
        assert metric.per_process is not None
        chosen = self.candidates(selector)
        if not chosen:
            what = "worker processes" if selector == "worker" else "processes"
            raise MissingMetric(f"{self.path}: recording has no {what} for {name}")
        measured = [(v, p) for p in chosen if (v := metric.per_process(self, p)) is not None]
        missing = [f"{process_label(p)}: no value" for p in chosen
                   if all(q is not p for _, q in measured)]
        if metric.name.startswith("cow."):
            missing += [f"{process_label(p)}: {self.stale[p.id]}"
                        for _, p in measured if p.id in self.stale]
        if not measured:
            raise MissingMetric(
                f"{self.path}: recording lacks metric {name}"
                f" (none of {len(chosen)} {selector} process(es) has it)",
                hint=metric.hint,
            )
        value, process = max(measured, key=lambda vp: worst(vp[0]))
        return Measurement(value, process, len(chosen) - len(measured), tuple(missing))
