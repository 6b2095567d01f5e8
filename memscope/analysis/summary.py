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

from memscope.analysis.totals import load_columns, tree_sums
from memscope.recording import ProcessRow, Recording

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


def _process_stats(rec: Recording) -> dict[int, dict[str, Any]]:
    stats: dict[int, dict[str, Any]] = {}
    for pid, n, full, prss, ppss, puss, pswap, last_t in rec.conn.execute(
        "SELECT process_id, COUNT(*), COUNT(pss), MAX(rss), MAX(pss), MAX(uss), MAX(swap), MAX(t)"
        " FROM samples GROUP BY process_id"
    ):
        stats[pid] = {
            "n": n,
            "full": full,
            "peak": Memory(prss, ppss, puss, None, pswap),
            "last_t": last_t,
        }
    # Last full sample and first full sample of each process.
    for pid, rss, pss, uss, sc, sd, swap in rec.conn.execute(
        "SELECT s.process_id, s.rss, s.pss, s.uss, s.shared_clean, s.shared_dirty, s.swap"
        " FROM samples s JOIN (SELECT process_id, MAX(t) AS t FROM samples WHERE pss IS NOT NULL"
        " GROUP BY process_id) m ON s.process_id = m.process_id AND s.t = m.t"
    ):
        stats[pid]["last"] = Memory(rss, pss, uss, sc + sd, swap)
    for pid, uss in rec.conn.execute(
        "SELECT s.process_id, s.uss FROM samples s JOIN (SELECT process_id, MIN(t) AS t"
        " FROM samples WHERE uss IS NOT NULL GROUP BY process_id) m"
        " ON s.process_id = m.process_id AND s.t = m.t"
    ):
        stats[pid]["first_uss"] = uss
    return stats


def _totals(rec: Recording) -> Totals:
    process_id, t, values = load_columns(rec, ("rss", "pss"))
    ticks, sums = tree_sums(process_id, t, values)
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
    return SamplerStats(
        ticks=len(ticks),
        mean_interval_s=mean,
        cpu_s=cpu,
        cpu_fraction=cpu / duration if duration > 0 else 0.0,
        rollups=sum(t[4] for t in ticks),
        process_cpu_s=process_cpu,
        process_cpu_fraction=process_cpu / duration if duration > 0 else 0.0,
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
    stats = _process_stats(rec)
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
        totals=_totals(rec),
    )
    from memscope.features import summarize

    summarize(rec, summary)
    return summary
