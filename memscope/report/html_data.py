"""The numbers behind the HTML report's charts: per-pixel min/max envelopes, computed with numpy.

Every chart shares one time grid of `buckets` columns over the recording (about one per pixel of
a chart's width). Each column holds two slots: the column's extreme values in the order they
happened (min then max, or max then min), so a spike one sample wide still reaches its true
height however many samples fall into one pixel. A column with one sample fills its first slot
only. Values are KiB integers, delta-encoded per series (`decode` in report.js) to keep a
200-process x 10,000-sample report under 10 MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from memscope.analysis.summary import Summary
from memscope.analysis.totals import load_columns, tree_sums
from memscope.recording import Recording

__all__ = [
    "BUCKETS", "Grid", "Samples", "chart_payload", "delta_encode", "envelope", "load_samples",
]

BUCKETS = 600
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
#: Per-process series drawn from the samples table, by name in the payload.
SERIES = ("rss", "pss", "uss", "shared", "swap")
#: COW timeline keys a process's extra["cow"]["timeline"] may carry (bytes), stacked in order.
COW_SERIES = ("shared", "copied", "new_private", "swapped")


@dataclass(frozen=True, slots=True)
class Grid:
    """`buckets` columns of `width` seconds from `t0` (seconds since the epoch)."""

    t0: float
    width: float
    buckets: int

    @classmethod
    def over(cls, t0: float, t1: float, buckets: int = BUCKETS) -> Grid:
        span = max(t1 - t0, 1e-3)
        return cls(t0, span / buckets, buckets)

    def column(self, t: F64) -> I64:
        idx = np.floor((t - self.t0) / self.width).astype(np.int64)
        return np.clip(idx, 0, self.buckets - 1)


@dataclass(frozen=True, slots=True)
class Samples:
    """All samples as columns, sorted by (process_id, t). NaN where a rollup was not taken."""

    process_id: I64
    t: F64
    values: dict[str, F64]


def load_samples(rec: Recording) -> Samples:
    """Vectorised; NULL becomes NaN (rollup columns are NULL on counter-only ticks)."""
    process_id, t, values = load_columns(rec, SERIES)
    return Samples(process_id, t, values)


def envelope(columns: I64, values: F64, buckets: int) -> F64:
    """Two slots per column: the column's extremes in time order (NaN where it has no sample).

    `columns` must be non-decreasing (samples in time order). Per column: the minimum (its
    first occurrence) and the maximum (its last occurrence), in the order they happened; a
    column with one sample fills its first slot only. O(n) reductions, no sort.
    """
    out = np.full(2 * buckets, np.nan)
    ok = ~np.isnan(values)
    cols, vals = columns[ok], values[ok]
    if cols.size == 0:
        return out
    pos = np.arange(cols.size)
    starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
    group = np.cumsum(np.r_[True, cols[1:] != cols[:-1]]) - 1
    lo_v = np.minimum.reduceat(vals, starts)
    hi_v = np.maximum.reduceat(vals, starts)
    lo = np.minimum.reduceat(np.where(vals == lo_v[group], pos, cols.size), starts)
    hi = np.maximum.reduceat(np.where(vals == hi_v[group], pos, -1), starts)
    col = cols[starts]
    single = np.diff(np.r_[starts, cols.size]) == 1
    first_is_min = lo <= hi
    out[2 * col] = np.where(first_is_min, lo_v, hi_v)
    out[2 * col + 1] = np.where(single, np.nan, np.where(first_is_min, hi_v, lo_v))
    return out


def delta_encode(values: F64) -> list[int | None]:
    """KiB integers; the first present value absolute, later ones relative to the previous."""
    present = ~np.isnan(values)
    kib = np.round(values[present] / 1024).astype(np.int64)
    out = np.full(values.size, None, dtype=object)
    out[present] = np.diff(kib, prepend=np.int64(0)).tolist()
    encoded: list[int | None] = out.tolist()
    return encoded


def _span(env: Sequence[F64]) -> tuple[int, int] | None:
    present = np.zeros(env[0].size, dtype=bool)
    for e in env:
        present |= ~np.isnan(e)
    idx = np.flatnonzero(present)
    if idx.size == 0:
        return None
    return int(idx[0]), int(idx[-1]) + 1


def _series_block(grid: Grid, t: F64, named: dict[str, F64]) -> dict[str, Any] | None:
    cols = grid.column(t)
    envs = {k: envelope(cols, v, grid.buckets) for k, v in named.items()}
    envs = {k: e for k, e in envs.items() if not np.all(np.isnan(e))}
    if not envs:
        return None
    span = _span(list(envs.values()))
    assert span is not None
    lo, hi = span
    return {"o": lo, "s": {k: delta_encode(e[lo:hi]) for k, e in envs.items()}}


def _cow_timeline(extra: dict[str, Any]) -> tuple[F64, dict[str, F64]] | None:
    """extra["cow"]["timeline"]: {"t": [...], "shared": [...], "copied": [...], ...} in bytes."""
    cow = extra.get("cow")
    timeline = cow.get("timeline") if isinstance(cow, dict) else None
    if not isinstance(timeline, dict) or not isinstance(timeline.get("t"), list):
        return None
    try:
        t = np.asarray(timeline["t"], dtype=np.float64)
        series = {
            k: np.asarray([np.nan if v is None else v for v in timeline[k]], dtype=np.float64)
            for k in COW_SERIES
            if isinstance(timeline.get(k), list) and len(timeline[k]) == t.size
        }
    except (TypeError, ValueError):
        return None
    order = np.argsort(t, kind="stable")
    return (t[order], {k: v[order] for k, v in series.items()}) if series else None


def _totals(grid: Grid, samples: Samples) -> dict[str, Any] | None:
    """ΣRSS, ΣPSS and ΣUSS per tick, each live process's latest rollup carried forward."""
    if samples.t.size == 0:
        return None
    ticks, sums = tree_sums(
        samples.process_id, samples.t, {k: samples.values[k] for k in ("rss", "pss", "uss")}
    )
    named = {f"total_{k}": v for k, v in sums.items() if np.any(v > 0)}
    return _series_block(grid, ticks, named)


def chart_payload(summary: Summary, samples: Samples, buckets: int = BUCKETS) -> dict[str, Any]:
    """Everything the charts draw: the grid, tree totals, and one block per process."""
    t_end = summary.ended_at
    if samples.t.size:
        t_end = max(t_end, float(samples.t.max()))
    t0 = min(summary.started_at, float(samples.t.min())) if samples.t.size else summary.started_at
    grid = Grid.over(t0, t_end, buckets)
    bounds = np.searchsorted(samples.process_id, [p.id for p in summary.processes], side="left")
    ends = np.searchsorted(samples.process_id, [p.id for p in summary.processes], side="right")
    processes: dict[str, Any] = {}
    for p, lo, hi in zip(summary.processes, bounds.tolist(), ends.tolist(), strict=True):
        named = {k: samples.values[k][lo:hi] for k in SERIES}
        if not np.any(np.nan_to_num(named["swap"]) > 0):
            named.pop("swap")  # no swap on this machine: keep the file small
        block = _series_block(grid, samples.t[lo:hi], named) if hi > lo else None
        cow = _cow_timeline(p.extra)
        if cow is not None:
            cow_block = _series_block(grid, cow[0], cow[1])
            if cow_block is not None:
                block = block or {"o": cow_block["o"], "s": {}}
                block["cow"] = cow_block
        if block is not None:
            processes[str(p.id)] = block
    return {
        "grid": {"t0": grid.t0, "width": grid.width, "buckets": grid.buckets},
        "totals": _totals(grid, samples),
        "processes": processes,
    }
