"""What `memscope diff` compares, read from one recording: the only module that knows where.

Every figure comes from the Summary (analysis/summary.py) with its feature sections
(memscope.features: the cow section `Summary.cow`, typed, as `check` reads it; the leaks
section's `processes[].leak`; the sites section's `processes[].cow_sites`). If those move,
only this adapter changes.

A recording becomes flat figures `{(scope, metric): value}`:
- scope "tree": `pss.peak` (ΣPSS) and `rss.peak` (ΣRSS); `copied.total`, `copied.type.T`,
  `copied.cause.C`, `copied.site.S`, each summed over the processes: a process's copied bytes
  are those of its *peak* COW scan (the one `check` judges, `Summary.cow`), its types and
  causes those of its peak *full* scan (a quick page-level scan has none), its sites the
  sites section's;
- scope ROLE (root, worker, descendant): `uss.peak`, `uss.last`, `pss.peak`, `pss.last` and
  `copied.total` summed over the role's processes, `leak.slope` the largest of them;
- scope "ROLE[N]": the role's N-th process by start time (1-based), the same figures: a
  worker is matched with the worker of the same ordinal in the other recording.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from memscope.analysis.cow_summary import CowProcess, cow_json
from memscope.analysis.summary import ProcessSummary, Summary, build_summary
from memscope.cow._model import QUICK_TARGET
from memscope.errors import RecordingError
from memscope.recording import open_recording

__all__ = ["Figures", "figures_of", "load_figures"]

Figures = dict[tuple[str, str], float]


@dataclass(frozen=True, slots=True)
class _Process:
    cow: dict[str, Any] | None
    sites: list[dict[str, Any]]
    slope: float | None


def _peak_cow(c: CowProcess | None) -> dict[str, Any] | None:
    """`copied_bytes` of the peak scan, `by_type`/`by_cause` (the report's view, top types)
    of the full scan that copied most: what `check` judges, never a scan taken mid-copy."""
    if c is None:
        return None
    full = [s for s in c.scans if s.target != QUICK_TARGET]
    view = cow_json(max(full, key=lambda s: s.copied_bytes) if full else c.detail)
    return {"copied_bytes": c.peak.copied_bytes, "by_type": view["by_type"],
            "by_cause": view["by_cause"] if full else {}}


def _extras(p: ProcessSummary, summary: Summary) -> _Process:
    sites = p.extra.get("cow_sites")
    leak = p.extra.get("leak")
    slope = leak.get("slope_bytes_per_s") if isinstance(leak, dict) else None
    return _Process(
        _peak_cow(summary.cow.processes.get(p.id) if summary.cow is not None else None),
        list(sites.get("sites", [])) if isinstance(sites, dict) else [],
        float(slope) if isinstance(slope, int | float) else None,
    )


def _add(out: Figures, key: tuple[str, str], value: float | None) -> None:
    if value is not None:
        out[key] = out.get(key, 0.0) + float(value)


def _copied(out: Figures, scope: str, extras: Iterable[_Process], detail: bool) -> None:
    for x in extras:
        if x.cow is None:
            continue
        _add(out, (scope, "copied.total"), x.cow["copied_bytes"])
        if not detail:
            continue
        for row in x.cow.get("by_type", []):
            _add(out, (scope, f"copied.type.{row['type']}"), row["bytes"])
        for cause, nbytes in (x.cow.get("by_cause") or {}).items():
            _add(out, (scope, f"copied.cause.{cause}"), nbytes)
        for row in x.sites:
            _add(out, (scope, f"copied.site.{row['site']}"), row["bytes"])


def _process_figures(
    out: Figures, scope: str, procs: list[ProcessSummary], summary: Summary
) -> None:
    extras = [_extras(p, summary) for p in procs]
    for p in procs:
        _add(out, (scope, "uss.peak"), p.peak.uss)
        _add(out, (scope, "pss.peak"), p.peak.pss)
        _add(out, (scope, "uss.last"), p.last.uss)
        _add(out, (scope, "pss.last"), p.last.pss)
    _copied(out, scope, extras, detail=False)
    slopes = [x.slope for x in extras if x.slope is not None]
    if slopes:
        out[(scope, "leak.slope")] = max(slopes)


def figures_of(summary: Summary) -> Figures:
    out: Figures = {}
    if summary.totals.peak_pss:
        out[("tree", "pss.peak")] = float(summary.totals.peak_pss)
        out[("tree", "rss.peak")] = float(summary.totals.peak_rss)
    _copied(out, "tree", [_extras(p, summary) for p in summary.processes], detail=True)
    roles: dict[str, list[ProcessSummary]] = {}
    for p in summary.processes:
        roles.setdefault(p.role, []).append(p)
    for role, procs in roles.items():
        _process_figures(out, role, procs, summary)
        for n, p in enumerate(sorted(procs, key=lambda q: (q.started_at, q.id)), start=1):
            if len(procs) > 1:
                _process_figures(out, f"{role}[{n}]", [p], summary)
    return out


def load_figures(path: str) -> Figures:
    """Figures of the recording at `path` (RecordingError if it is not one)."""
    rec = open_recording(path)
    try:
        try:
            summary = build_summary(rec)
        except sqlite3.DatabaseError as exc:
            raise RecordingError(f"{path}: recording is corrupt or truncated ({exc})") from None
        return figures_of(summary)
    finally:
        rec.close()
