"""The summary every reporter renders: a pure function of a recording.

Tree totals: counters (rss) exist for every live process at every tick, full rollups (pss,
uss, swap) only when the sampler's budget allowed one. ΣPSS at a tick therefore sums each live
process's most recent PSS at or before that tick; ΣRSS sums that tick's RSS.

Feature sections (COW, sites, leaks, notes) are computed by `memscope.features.summarize`, in
the features' order, whatever was imported before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from memscope.analysis.totals import tree_sums
from memscope.recording import ProcessRow, Recording, SampleColumns

if TYPE_CHECKING:
    from memscope.analysis.cow_summary import CowSection
    from memscope.analysis.leaks import LeakResult
    from memscope.leaks.summary import SitesSection
    from memscope.notes import Note

__all__ = [
    "Memory",
    "ProcessSummary",
    "SamplerStats",
    "Summary",
    "Totals",
    "build_summary",
]


@dataclass(frozen=True, slots=True)
class Memory:
    rss: int | None = None
    pss: int | None = None
    uss: int | None = None
    shared: int | None = None
    swap: int | None = None


@dataclass(slots=True)
class ProcessSummary:
    id: int
    pid: int
    ppid: int
    parent_id: int | None
    role: str
    cmdline: list[str]
    python_version: str | None
    started_at: float
    exited_at: float | None
    exit_code: int | None
    samples: int
    full_samples: int
    peak: Memory
    last: Memory
    first_uss: int | None
    last_sample_at: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return " ".join(self.cmdline)

    @property
    def uss_growth(self) -> int | None:
        if self.first_uss is None or self.last.uss is None:
            return None
        return self.last.uss - self.first_uss

    def lifetime(self, end: float) -> float:
        return (self.exited_at if self.exited_at is not None else end) - self.started_at


@dataclass(frozen=True, slots=True)
class SamplerStats:
    ticks: int
    mean_interval_s: float
    cpu_s: float
    cpu_fraction: float  # of one core, over the recording
    rollups: int
    process_cpu_s: float = 0.0  # memscope's whole process: all threads, user + sys
    process_cpu_fraction: float = 0.0  # ... of one core, over the recording
    budget: float | None = None  # the CPU budget's share of one core
    #: the longest interval the sampler stretched its ticks to, to stay within the budget
    stretched_to_s: float | None = None

    def describe(self) -> str:
        """One line for the reports: ticks, rollups and memscope's own CPU."""
        line = (f"{self.ticks} ticks every {self.mean_interval_s:.3f}s, {self.rollups} full"
                f" rollups; memscope used {self.process_cpu_s:.2f} CPU-s"
                f" ({self.process_cpu_fraction:.1%} of one core, all threads)")
        if self.stretched_to_s is not None:
            budget = "" if self.budget is None else f" {self.budget:.0%}"
            line += (f"; ticks stretched up to {self.stretched_to_s:.2f}s to keep within the"
                     f"{budget} CPU budget")
        return line


@dataclass(frozen=True, slots=True)
class Totals:
    peak_pss: int
    peak_pss_at: float | None
    peak_rss: int
    peak_rss_at: float | None

    @property
    def rss_over_pss(self) -> float | None:
        return self.peak_rss / self.peak_pss if self.peak_pss else None


@dataclass(slots=True)
class Summary:
    path: str
    command: list[str]
    mode: str
    started_at: float
    ended_at: float
    interval_s: float
    exit_code: int | None
    sampler: SamplerStats
    processes: list[ProcessSummary]
    totals: Totals
    extra: dict[str, Any] = field(default_factory=dict)  # JSON views of the sections below
    # Feature sections (memscope.features), None when the recording has no such data:
    cow: CowSection | None = None
    sites: SitesSection | None = None
    leaks: dict[int, LeakResult] | None = None  # process_id -> verdict
    notes: list[Note] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def workers(self) -> list[ProcessSummary]:
        return [p for p in self.processes if p.role == "worker"]

    def growers(self, limit: int = 5) -> list[ProcessSummary]:
        """Workers whose USS grew most since their first full sample."""
        grown = [p for p in self.workers if p.uss_growth is not None]
        grown.sort(key=lambda p: p.uss_growth or 0, reverse=True)
        return grown[:limit]


_STAT_COLUMNS = ("rss", "pss", "uss", "shared", "swap")


def _int(value: float) -> int | None:
    return None if value != value else int(value)


def _process_stats(cols: SampleColumns) -> dict[int, dict[str, Any]]:
    """Per process, vectorised over the sorted columns: counts, peaks, last and first full."""
    if len(cols) == 0:
        return {}
    v = cols.values
    starts = np.flatnonzero(np.r_[True, cols.process_id[1:] != cols.process_id[:-1]])
    ids = cols.process_id[starts]
    ends = np.r_[starts[1:], cols.t.size] - 1
    idx = np.arange(cols.t.size, dtype=np.int64)
    full = ~np.isnan(v["pss"])
    last_full = np.maximum.reduceat(np.where(full, idx, -1), starts)
    idx[np.isnan(v["uss"])] = cols.t.size
    first_uss = np.minimum.reduceat(idx, starts)
    del idx
    peaks = {c: np.fmax.reduceat(v[c], starts).tolist() for c in ("rss", "pss", "uss", "swap")}
    n_full = np.add.reduceat(full.astype(np.int64), starts).tolist()
    stats: dict[int, dict[str, Any]] = {}
    for k, pid in enumerate(ids.tolist()):
        entry: dict[str, Any] = {
            "n": int(ends[k] - starts[k] + 1),
            "full": n_full[k],
            "peak": Memory(_int(peaks["rss"][k]), _int(peaks["pss"][k]),
                           _int(peaks["uss"][k]), None, _int(peaks["swap"][k])),
            "last_t": float(cols.t[ends[k]]),
        }
        if last_full[k] >= 0:
            i = int(last_full[k])
            entry["last"] = Memory(_int(v["rss"][i]), _int(v["pss"][i]), _int(v["uss"][i]),
                                   _int(v["shared"][i]), _int(v["swap"][i]))
        if first_uss[k] < cols.t.size:
            entry["first_uss"] = _int(v["uss"][int(first_uss[k])])
        stats[pid] = entry
    return stats


def _totals(cols: SampleColumns) -> Totals:
    ticks, sums = tree_sums(cols.process_id, cols.t, {"rss": cols.values["rss"],
                                                      "pss": cols.values["pss"]})
    if ticks.size == 0:
        return Totals(0, None, 0, None)
    ipss, irss = int(np.argmax(sums["pss"])), int(np.argmax(sums["rss"]))
    return Totals(
        int(sums["pss"][ipss]), float(ticks[ipss]), int(sums["rss"][irss]), float(ticks[irss])
    )


def _sampler(rec: Recording, duration: float) -> SamplerStats:
    ticks = rec.ticks()
    times = [t[0] for t in ticks]
    mean = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
    cpu = sum(t[2] for t in ticks)
    process_cpu = float(rec.meta.get("process_cpu_s") or 0.0)
    budget, stretched = rec.meta.get("budget"), rec.meta.get("sampler_stretched_to_s")
    return SamplerStats(
        ticks=len(ticks),
        mean_interval_s=mean,
        cpu_s=cpu,
        cpu_fraction=cpu / duration if duration > 0 else 0.0,
        rollups=sum(t[4] for t in ticks),
        process_cpu_s=process_cpu,
        process_cpu_fraction=process_cpu / duration if duration > 0 else 0.0,
        budget=None if budget is None else float(budget),
        stretched_to_s=None if stretched is None else float(stretched),
    )


def _process_summary(row: ProcessRow, stats: dict[str, Any] | None) -> ProcessSummary:
    stats = stats or {}
    return ProcessSummary(
        id=row.id,
        pid=row.pid,
        ppid=row.ppid,
        parent_id=row.parent_id,
        role=row.role,
        cmdline=row.cmdline,
        python_version=row.python_version,
        started_at=row.started_at,
        exited_at=row.exited_at,
        exit_code=row.exit_code,
        samples=stats.get("n", 0),
        full_samples=stats.get("full", 0),
        peak=stats.get("peak", Memory()),
        last=stats.get("last", Memory()),
        first_uss=stats.get("first_uss"),
        last_sample_at=stats.get("last_t"),
    )


def build_summary(rec: Recording) -> Summary:
    meta = rec.meta
    cols = rec.columns(_STAT_COLUMNS)
    stats = _process_stats(cols)
    processes = [_process_summary(row, stats.get(row.id)) for row in rec.processes]
    started = float(meta.get("started_at", 0.0))
    last_t = max((p.last_sample_at or started for p in processes), default=started)
    ended = float(meta.get("ended_at") or last_t)
    root_cmd = processes[0].cmdline if processes else []
    summary = Summary(
        path=rec.path,
        command=list(meta.get("command") or root_cmd),
        mode=str(meta.get("mode", "run")),
        started_at=started,
        ended_at=ended,
        interval_s=float(meta.get("interval_s", 0.0)),
        exit_code=meta.get("exit_code"),
        sampler=_sampler(rec, ended - started),
        processes=processes,
        totals=_totals(cols),
    )
    from memscope.features import summarize

    summarize(rec, summary)
    return summary
