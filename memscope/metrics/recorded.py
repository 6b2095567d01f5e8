"""The exporter's snapshot rebuilt from a finished recording (for `report --format prometheus`).

Slots are replayed from the recorded births and exits with the same lowest-free rule the live
exporter uses, so a recording yields the series a live scrape would have produced. Each series
keeps the *last* values of the last process that held it (its last full sample); the tree gauges
are the sums over those series, `memscope_tree_workers` counts the worker series (the peak
number of workers alive at once), and `memscope_tree_peak_pss_bytes` is the recording's peak.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memscope.analysis.summary import ProcessSummary, Summary
from memscope.metrics.labels import SlotAllocator, command_name
from memscope.metrics.snapshot import ProcessPoint, Snapshot
from memscope.recording import Recording

__all__ = ["snapshot_from_recording"]

_SUMMED = ("pss", "uss", "rss", "swap", "cow_copied")


def _slots(processes: list[ProcessSummary], rec: Recording) -> dict[int, int]:
    """Replay births and exits in time order as the live feed saw them: exits first at equal
    times (the sampler records deaths before births), births by (start_ticks, pid)."""
    start_ticks = {row.id: row.start_ticks for row in rec.processes}
    events: list[tuple[float, int, int, int, int]] = []
    for p in processes:
        events.append((p.started_at, 1, start_ticks.get(p.id, 0), p.pid, p.id))
        if p.exited_at is not None:
            events.append((p.exited_at, 0, 0, 0, p.id))
    roles = {p.id: p.role for p in processes}
    allocator = SlotAllocator()
    slots: dict[int, int] = {}
    for _t, kind, _ticks, _pid, record_id in sorted(events):
        if kind == 1:
            slots[record_id] = allocator.slot(record_id, roles[record_id])
        else:
            allocator.release(record_id)
    return slots


def _cow(rec: Recording) -> dict[int, dict[str, float]]:
    if not rec.has_table("cow_scans"):
        return {}
    rows = rec.conn.execute(
        "SELECT process_id, copied_bytes, shared_bytes, inherited_bytes FROM cow_scans"
        " WHERE id IN (SELECT MAX(id) FROM cow_scans GROUP BY process_id)"
    )
    return {
        pid: {"cow_copied": copied, "cow_shared": shared, "cow_inherited": inherited}
        for pid, copied, shared, inherited in rows
    }


def _leak_slope(p: ProcessSummary) -> float | None:
    leak: Any = p.extra.get("leak")
    slope = leak.get("slope_bytes_per_s") if isinstance(leak, dict) else None
    return float(slope) if isinstance(slope, int | float) else None


def snapshot_from_recording(summary: Summary, rec: Recording) -> Snapshot:
    slots = _slots(summary.processes, rec)
    full = rec.columns(("pss",))
    ok = ~np.isnan(full.values["pss"])
    sampled = dict(zip(full.process_id[ok].tolist(), full.t[ok].tolist(), strict=True))
    cow = _cow(rec)
    series: dict[tuple[str, int, str], tuple[float, ProcessPoint]] = {}
    for p in summary.processes:
        values: dict[str, float] = {"pid": p.pid, "started": p.started_at}
        for key in ("uss", "pss", "rss", "swap"):
            value = getattr(p.last, key)
            if value is not None:
                values[key] = value
        if p.id in sampled:
            values["sampled"] = sampled[p.id]
        values.update(cow.get(p.id, {}))
        slope = _leak_slope(p)
        if slope is not None:
            values["leak_slope"] = slope
        point = ProcessPoint(p.role, slots[p.id], command_name(p.cmdline), values)
        labels = (point.role, point.slot, point.command)
        if labels not in series or series[labels][0] <= p.started_at:
            series[labels] = (p.started_at, point)

    points = tuple(
        sorted((pt for _, pt in series.values()), key=lambda pt: (pt.role, pt.slot, pt.command))
    )
    tree: dict[str, float] = {}
    for point in points:
        for key in _SUMMED:
            if key in point.values:
                tree[key] = tree.get(key, 0.0) + point.values[key]
    tree["peak_pss"] = summary.totals.peak_pss
    tree["processes"] = len(points)
    tree["workers"] = sum(1 for pt in points if pt.role == "worker")
    return Snapshot(summary.ended_at, points, tree, summary.sampler.ticks, summary.mode)
