"""The leaks and sites features' summary sections (pure reads of the recording).

`summarize_leaks(recording, summary)` sets `Summary.leaks` (process_id -> LeakResult) for every
process with samples, and its JSON view `ProcessSummary.extra["leak"]` ({verdict,
slope_bytes_per_s, confidence, ci_bytes_per_s, samples, window_s, siblings, growing[]}); the
growing sites (agent snapshots) or else types (census) come from the leak_snapshots table.

`summarize_sites(recording, summary)` sets `Summary.sites` (`SitesSection`: the latest COW
sites scan of each worker, and copied bytes by site summed over them) and its JSON views
`ProcessSummary.extra["cow_sites"]` {t, sites[]} and `Summary.extra["cow_sites"]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from memscope.analysis.leaks import (
    LeakOptions,
    LeakResult,
    compare_siblings,
    growing_from_series,
    leak_verdict,
    warmup_start,
)
from memscope.analysis.summary import Summary
from memscope.leaks.store import latest_cow_sites, read_leak_snapshots
from memscope.recording import Recording

__all__ = ["TOP_GROWING", "TOP_SITES", "SitesSection", "summarize_leaks", "summarize_sites"]

TOP_GROWING = 5
TOP_SITES = 20
MIN_GROWTH_BYTES = 4096


@dataclass(frozen=True)
class SitesSection:
    per_process: dict[int, tuple[float, list[dict[str, Any]]]]  # process_id -> (t, sites)
    total: list[dict[str, Any]]  # {site, bytes, objects, workers, traceback}, largest first


def summarize_leaks(
    rec: Recording, summary: Summary, options: LeakOptions | None = None
) -> None:
    results: dict[int, LeakResult] = {}
    groups: dict[int, int] = {}
    for p in summary.processes:
        t: list[float] = []
        uss: list[float] = []
        t_anon: list[float] = []
        anon: list[float] = []
        for row in rec.samples(p.id):
            value = row["uss"]
            if value is not None:
                t.append(row.t)
                uss.append(float(value))
            rss, shared = row["rss"], row["rss_shared"]
            if rss is not None and shared is not None:
                t_anon.append(row.t)
                anon.append(float(rss - shared))
        if not t and not t_anon:
            continue
        snaps = read_leak_snapshots(rec, p.id)
        kind = "site" if "site" in snaps else "type"
        since = warmup_start(t_anon or t, options)
        series = [s for s in snaps.get(kind, []) if s[0] >= since]
        growing = growing_from_series(series, kind, TOP_GROWING, MIN_GROWTH_BYTES)
        result = leak_verdict(t, uss, options, growing, series="uss")
        if result.verdict == "insufficient-data" and len(t_anon) > len(t):
            # Full rollups (USS) are rationed by the sampler's CPU budget; the anonymous
            # resident size (statm, every tick) grows by the same new private pages.
            fallback = leak_verdict(t_anon, anon, options, growing, series="rss_anon")
            if fallback.verdict != "insufficient-data":
                result = fallback
        results[p.id] = result
        if p.role == "worker":
            groups[p.id] = p.ppid
    results = compare_siblings(results, groups)
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
    if total:
        ranked = sorted(total.items(), key=lambda kv: -kv[1][0])[:TOP_SITES]
        rows = [
            {"site": s, "bytes": b, "objects": n, "workers": w, "traceback": tb}
            for s, (b, n, tb, w) in ranked
        ]
        summary.extra["cow_sites"] = rows
        summary.sites = SitesSection(per_process, rows)
