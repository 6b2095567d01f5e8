"""Leak and COW-sites part of the summary (a summary extension; pure reads of the recording).

`add_leaks(recording, summary)` sets, for every process with samples:
- `ProcessSummary.extra["leak"]`: the JSON `processes[].leak` object {verdict,
  slope_bytes_per_s, confidence, ci_bytes_per_s, samples, window_s, siblings, growing[]}; the
  growing sites (agent snapshots) or else types (census) come from the leak_snapshots table;
- `ProcessSummary.extra["cow_sites"]`: the latest COW sites scan {t, sites[]} of a worker;
and `Summary.extra["cow_sites"]`: copied bytes by site summed over the workers' latest scans.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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

__all__ = ["TOP_GROWING", "TOP_SITES", "add_leaks"]

TOP_GROWING = 5
TOP_SITES = 20
MIN_GROWTH_BYTES = 4096


def add_leaks(rec: Recording, summary: Summary, options: LeakOptions | None = None) -> None:
    results: dict[int, LeakResult] = {}
    groups: dict[int, int] = {}
    cols = rec.columns(("uss", "rss", "rss_shared"))
    ids, starts = np.unique(cols.process_id, return_index=True)
    bounds = dict(zip(ids.tolist(), zip(starts.tolist(), [*starts[1:].tolist(), len(cols)],
                                        strict=True), strict=True))
    for p in summary.processes:
        lo, hi = bounds.get(p.id, (0, 0))
        times = cols.t[lo:hi]
        uss_all = cols.values["uss"][lo:hi]
        anon_all = cols.values["rss"][lo:hi] - cols.values["rss_shared"][lo:hi]
        has_uss, has_anon = ~np.isnan(uss_all), ~np.isnan(anon_all)
        t: list[float] = times[has_uss].tolist()
        uss: list[float] = uss_all[has_uss].tolist()
        t_anon: list[float] = times[has_anon].tolist()
        anon: list[float] = anon_all[has_anon].tolist()
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
    total: dict[str, list[Any]] = {}
    for p in summary.processes:
        if p.id in results:
            p.extra["leak"] = results[p.id].to_json()
        t_sites, rows = latest_cow_sites(rec, p.id)
        if rows:
            p.extra["cow_sites"] = {"t": t_sites, "sites": rows[:TOP_SITES]}
            for r in rows:
                acc = total.setdefault(r["site"], [0, 0, r["traceback"], 0])
                acc[0] += r["bytes"]
                acc[1] += r["objects"]
                acc[3] += 1
    if total:
        ranked = sorted(total.items(), key=lambda kv: -kv[1][0])[:TOP_SITES]
        summary.extra["cow_sites"] = [
            {"site": s, "bytes": b, "objects": n, "workers": w, "traceback": tb}
            for s, (b, n, tb, w) in ranked
        ]
