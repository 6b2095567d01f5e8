"""The leaks and sites features' summary sections (pure reads of the recording).

`summarize_leaks(recording, summary)` sets `Summary.leaks` (process_id -> LeakResult) for every
process with samples, and its JSON view `ProcessSummary.extra["leak"]` ({verdict,
slope_bytes_per_s, confidence, ci_bytes_per_s, samples, window_s, siblings, growing[]}); the
growing sites (agent snapshots) or else types (census) come from the leak_snapshots table.

`summarize_sites(recording, summary)` sets `Summary.sites` (`SitesSection`: the latest COW
sites scan of each worker, and copied bytes by site summed over them) and its JSON views
`ProcessSummary.extra["cow_sites"]` {t, sites[]} and `Summary.extra["cow_sites"]`.
`Summary.extra["cow_sites_resolution"]`: per worker, how its sites were resolved (read, parse
and lookup seconds, blocks looked up / cached, resolved / sampled / untraced bytes, the share
of copied pages parsed `page_rate`, the share of copied bytes estimated) or why that failed;
typed in `SitesSection.resolution` (memscope.leaks.resolution).

The window of each process (docs/leaks.md): samples after its first child's birth for a parent
(the preload before the fork, and the fork itself, are not growth), before the shutdown window
(analysis.steady), then the warm-up of LeakOptions. The minimum growth is at least two pymalloc
arenas of the process's CPython (256 KiB arenas on 3.8/3.9, 1 MiB on 3.10+): one arena is the
allocator's step, not a trend. Options come from `[tool.memscope.leaks]` of ./pyproject.toml
(`min_window_s`, `min_rate`, `min_growth`, `warmup_s`; sizes and rates as in rules:
"2MiB", "1KiB/s").
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from memscope.analysis.leaks import (
    LeakOptions,
    LeakResult,
    compare_siblings,
    growing_from_series,
    leak_verdict,
    warmup_start,
)
from memscope.analysis.steady import shutdown_start
from memscope.analysis.summary import ProcessSummary, Summary
from memscope.errors import InputError
from memscope.leaks.resolution import WorkerResolution, resolutions_from_meta
from memscope.leaks.store import latest_cow_sites, read_leak_snapshots
from memscope.quantity import Dimension, parse_value
from memscope.recording import Recording

__all__ = [
    "TOP_GROWING",
    "TOP_SITES",
    "SitesSection",
    "load_leak_options",
    "process_options",
    "summarize_leaks",
    "summarize_sites",
]

TOP_GROWING = 5
TOP_SITES = 20
MIN_GROWTH_BYTES = 4096
_KEYS = {"min_window_s": "min_span_s", "min_rate": "min_rate", "min_growth": "min_growth",
         "warmup_s": "warmup_s"}
_DIMS = {"min_rate": Dimension.RATE, "min_growth": Dimension.BYTES}


@dataclass(frozen=True)
class SitesSection:
    per_process: dict[int, tuple[float, list[dict[str, Any]]]]  # process_id -> (t, sites)
    total: list[dict[str, Any]]  # {site, bytes, objects, workers, traceback}, largest first
    resolution: list[WorkerResolution] = field(default_factory=list)  # per worker, by pid


def load_leak_options(path: str = "pyproject.toml") -> LeakOptions:
    """LeakOptions from `[tool.memscope.leaks]`; the defaults without the file or table."""
    if not os.path.isfile(path):
        return LeakOptions()
    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh).get("tool", {}).get("memscope", {}).get("leaks", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read [tool.memscope.leaks]: {exc}") from None
    unknown = set(table) - set(_KEYS)
    if unknown:
        raise InputError(f"{path}: unknown key(s) in [tool.memscope.leaks]:"
                         f" {', '.join(sorted(unknown))} (known: {', '.join(_KEYS)})")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, str) and key in _DIMS:
            values[_KEYS[key]] = parse_value(value, _DIMS[key], context=f"leaks.{key}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            values[_KEYS[key]] = int(value) if key == "min_samples" else float(value)
        else:
            raise InputError(f"{path}: [tool.memscope.leaks] {key} must be a number >= 0"
                             + (" or a string such as '1MiB'" if key in _DIMS else ""))
    return dataclasses.replace(LeakOptions(), **values)


def _arena_bytes(version: str | None) -> int:
    if not version:
        return 0
    parts = version.split(".")
    try:
        minor = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        return 0
    return (1 << 20) if minor >= (3, 10) else (256 << 10)


def process_options(base: LeakOptions, p: ProcessSummary) -> LeakOptions:
    """The options for one process: the minimum growth raised to two allocator arenas."""
    floor = 2 * _arena_bytes(p.python_version)
    return base if base.min_growth >= floor else dataclasses.replace(base, min_growth=floor)


def _forked_at(summary: Summary, p: ProcessSummary, min_life: float) -> float:
    """When `p` forked its first lasting child (one alive `min_life` seconds or still alive at
    the end: wrappers and shims run short helpers first); -inf without one."""
    births = [
        c.started_at for c in summary.processes
        if c.parent_id == p.id and c.lifetime(summary.ended_at) >= min_life
    ]
    return min(births) if births else float("-inf")


def summarize_leaks(
    rec: Recording, summary: Summary, options: LeakOptions | None = None
) -> None:
    base = options or load_leak_options()
    signalled = rec.meta.get("signalled_at")
    until_all = shutdown_start(
        summary, float(signalled) if isinstance(signalled, (int, float)) else None
    )
    results: dict[int, LeakResult] = {}
    groups: dict[int, int] = {}
    cols = rec.columns(("uss", "rss", "rss_shared"))
    pid = cols.process_id  # sorted: each process's rows are one run (no sort needed)
    bounds: dict[int, tuple[int, int]] = {}
    if pid.size:
        starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]])
        ends = np.r_[starts[1:], pid.size]
        bounds = dict(zip(pid[starts].tolist(), zip(starts.tolist(), ends.tolist(),
                                                    strict=True), strict=True))
    for p in summary.processes:
        opts = process_options(base, p)
        since = _forked_at(summary, p, opts.warmup_s)
        until = float("inf") if until_all is None else until_all
        lo, hi = bounds.get(p.id, (0, 0))
        times = cols.t[lo:hi]
        window = (times >= since) & (times < until)
        uss_all = cols.values["uss"][lo:hi]
        anon_all = cols.values["rss"][lo:hi] - cols.values["rss_shared"][lo:hi]
        has_uss, has_anon = window & ~np.isnan(uss_all), window & ~np.isnan(anon_all)
        t, uss = times[has_uss], uss_all[has_uss]  # arrays: no Python float per sample
        t_anon, anon = times[has_anon], anon_all[has_anon]
        if not t.size and not t_anon.size:
            continue
        snaps = read_leak_snapshots(rec, p.id)
        kind = "site" if "site" in snaps else "type"
        warm = warmup_start(t_anon if t_anon.size else t, opts)
        series = [s for s in snaps.get(kind, []) if s[0] >= warm]  # snapshots are sparse
        growing = growing_from_series(series, kind, TOP_GROWING, MIN_GROWTH_BYTES)
        # The anonymous resident size (RssAnon: statm, every tick) grows by new memory only;
        # USS also grows when a worker copies inherited pages and when a parent's children
        # exit (its shared pages become private again): neither is a leak.
        result = leak_verdict(t_anon, anon, opts, growing, series="rss_anon")
        if result.verdict == "insufficient-data" and len(t) > len(t_anon):
            fallback = leak_verdict(t, uss, opts, growing, series="uss")
            if fallback.verdict != "insufficient-data":
                result = fallback
        results[p.id] = result
        if p.role != "root":  # siblings: the same parent (workers, or a wrapped master's)
            groups[p.id] = p.ppid
    results = compare_siblings(results, groups, base)
    for p in summary.processes:
        if p.id in results:
            p.extra["leak"] = results[p.id].to_json()
    if results:
        summary.leaks = results


def summarize_sites(rec: Recording, summary: Summary) -> None:
    total: dict[str, list[Any]] = {}
    per_process: dict[int, tuple[float, list[dict[str, Any]]]] = {}
    for p in summary.processes:
        t_sites, rows = latest_cow_sites(rec, p.id)
        if rows:
            per_process[p.id] = (t_sites, rows[:TOP_SITES])
            p.extra["cow_sites"] = {"t": t_sites, "sites": rows[:TOP_SITES]}
            for r in rows:
                acc = total.setdefault(r["site"], [0, 0, r["traceback"], 0])
                acc[0] += r["bytes"]
                acc[1] += r["objects"]
                acc[3] += 1
    resolution = resolutions_from_meta(rec.meta.get("cow_sites_resolution"))
    if resolution:
        summary.extra["cow_sites_resolution"] = [
            {"pid": r.pid, "t": r.t, **r.stats.as_dict(), "total_seconds": r.total_seconds,
             "estimated_share": r.estimated_share} for r in resolution]
    rows = []
    if total:
        ranked = sorted(total.items(), key=lambda kv: -kv[1][0])[:TOP_SITES]
        rows = [
            {"site": s, "bytes": b, "objects": n, "workers": w, "traceback": tb}
            for s, (b, n, tb, w) in ranked
        ]
        summary.extra["cow_sites"] = rows
    if rows or resolution:
        summary.sites = SitesSection(per_process, rows, resolution)
