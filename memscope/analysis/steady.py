"""Steady state vs shutdown: which part of a recording is the tree's normal life (pure).

A server stopped at the end of a `run` (Ctrl-C, SIGTERM, --duration) or an `attach`ed tree
whose root was stopped spends its last moments shutting down: workers finalize their
interpreters (touching, and so copying, every inherited object), free memory, and exit. Peaks
and last values taken over the whole recording then describe the shutdown, not the service.

The shutdown window starts at the time memscope forwarded a stop signal to the root
(`meta.signalled_at`, `run` only) when there is one; otherwise at the earliest of:
- the final exit wave: the first worker exit after which no process is born and every worker
  alive at that moment exits before the recording ends, moved back by a margin of
  `max(MARGIN_S, MARGIN_TICKS × interval)` (exits are seen up to a tick late, and a worker's
  finalization burst comes just before its exit);
- the root's own exit, when it has no workers.

"steady" figures (peak, last) are taken over the samples before that start. Without a shutdown
in the recording, steady and raw figures are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memscope.analysis.summary import Memory, Summary
from memscope.recording import Recording
from memscope.roles import MAIN_ROLES

__all__ = ["MARGIN_S", "MARGIN_TICKS", "SteadyFigures", "add_steady", "shutdown_start"]

MARGIN_S = 1.0
MARGIN_TICKS = 3


@dataclass(frozen=True, slots=True)
class SteadyFigures:
    """A process's figures before the shutdown window (None: no full sample before it)."""

    peak: Memory
    last: Memory
    samples: int

    def to_json(self) -> dict[str, int | None]:
        return {
            "peak_uss": self.peak.uss,
            "peak_pss": self.peak.pss,
            "peak_rss": self.peak.rss,
            "last_uss": self.last.uss,
            "last_pss": self.last.pss,
            "samples": self.samples,
        }


def _ends(summary: Summary) -> dict[int, float | None]:
    """Each worker's exit time; when the root exited (`run` stops then), a worker whose exit
    was not observed is taken to end at its last sample."""
    roots = [p for p in summary.processes if p.role in MAIN_ROLES]
    root_gone = bool(roots) and roots[0].exited_at is not None
    return {
        w.id: w.exited_at if w.exited_at is not None or not root_gone else w.last_sample_at
        for w in summary.workers
    }


def _exit_wave(summary: Summary) -> float | None:
    ends = _ends(summary)
    births = [p.started_at for p in summary.processes]
    for t in sorted(e for e in ends.values() if e is not None):
        alive = [w for w in summary.workers if w.started_at <= t and (ends[w.id] or t) >= t]
        if all(ends[w.id] is not None for w in alive) and not any(b > t for b in births):
            return t
    return None


def shutdown_start(summary: Summary, signalled_at: float | None = None) -> float | None:
    """Start of the shutdown window, or None when the recording holds no shutdown."""
    if signalled_at is not None and summary.started_at <= signalled_at <= summary.ended_at:
        return signalled_at  # exact: the burst cannot start before the signal
    candidates: list[float] = []
    margin = max(MARGIN_S, MARGIN_TICKS * summary.interval_s)
    wave = _exit_wave(summary) if summary.workers else None
    if wave is not None:
        candidates.append(wave - margin)
    roots = [p for p in summary.processes if p.role in MAIN_ROLES]
    if not summary.workers and roots and roots[0].exited_at is not None:
        candidates.append(roots[0].exited_at - margin)
    if not candidates:
        return None
    return max(summary.started_at, min(candidates))


def _figures(rec: Recording, process_id: int, before: float) -> SteadyFigures:
    cols = rec.columns(("rss", "pss", "uss", "shared", "swap")).of(process_id)
    window = cols.t < before
    v = {n: col[window] for n, col in cols.values.items()}

    def peak(name: str) -> int | None:
        taken = v[name][~np.isnan(v[name])]
        return int(taken.max()) if taken.size else None

    full = np.flatnonzero(~np.isnan(v["pss"]))
    last = Memory()
    if full.size:
        i = full[-1]
        last = Memory(*(None if np.isnan(v[n][i]) else int(v[n][i])
                        for n in ("rss", "pss", "uss", "shared", "swap")))
    return SteadyFigures(Memory(peak("rss"), peak("pss"), peak("uss"), None, peak("swap")),
                         last, int(full.size))


def add_steady(rec: Recording, summary: Summary) -> None:
    """Summary extension: `Summary.extra["steady"]` {shutdown_at, signalled_at} and, for every
    process, `ProcessSummary.extra["steady"]` (SteadyFigures.to_json())."""
    raw = rec.meta.get("signalled_at")
    signalled = float(raw) if isinstance(raw, (int, float)) else None
    start = shutdown_start(summary, signalled)
    summary.extra["steady"] = {"shutdown_at": start, "signalled_at": signalled}
    for p in summary.processes:
        if start is None:
            figures = SteadyFigures(p.peak, p.last, p.full_samples)
        else:
            figures = _figures(rec, p.id, start)
        p.extra["steady"] = figures.to_json()
