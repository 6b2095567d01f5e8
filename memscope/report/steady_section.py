"""Steady-state section of the text report; importing this module registers it, the summary
extension that finds the shutdown window (memscope.analysis.steady), and the one that marks
stale COW scans (`ProcessSummary.extra["cow_stale"]`: why the latest scan is older than the
process's last significant USS growth, memscope.analysis.staleness)."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table

from memscope.analysis.staleness import cow_staleness
from memscope.analysis.steady import add_steady
from memscope.analysis.summary import SUMMARY_EXTENSIONS, Summary
from memscope.recording import Recording
from memscope.report.text import TEXT_SECTIONS
from memscope.units import format_bytes, format_duration

__all__ = ["add_cow_staleness", "steady_section"]


def add_cow_staleness(rec: Recording, summary: Summary) -> None:
    until = (summary.extra.get("steady") or {}).get("shutdown_at")
    for p in summary.processes:
        cow = p.extra.get("cow")
        at = cow.get("scanned_at") if isinstance(cow, dict) else None
        if isinstance(at, (int, float)):
            stale = cow_staleness(rec, p.id, float(at), until)
            if stale is not None:
                p.extra["cow_stale"] = stale.describe(summary.started_at)


def steady_section(s: Summary) -> RenderableType | None:
    """Per process: steady (before the shutdown window) beside raw figures, when they differ."""
    info = s.extra.get("steady") or {}
    start = info.get("shutdown_at")
    if start is None:
        return None
    rows = [p for p in s.processes if "steady" in p.extra]
    changed = [
        p for p in rows
        if (p.extra["steady"]["peak_uss"], p.extra["steady"]["last_uss"])
        != (p.peak.uss, p.last.uss)
    ]
    if not changed:
        return None
    why = "root signalled" if info.get("signalled_at") == start else "workers exiting"
    table = Table(
        title=f"Steady state: before the shutdown at +{format_duration(start - s.started_at)}"
        f" ({why}); rules *.steady_* judge these",
        title_justify="left",
    )
    for col in ("pid", "role", "steady peak USS", "peak USS", "steady last USS", "last USS"):
        table.add_column(col, justify="left" if col == "role" else "right")
    for p in changed[:40]:
        st = p.extra["steady"]
        table.add_row(
            str(p.pid), p.role, format_bytes(st["peak_uss"]), format_bytes(p.peak.uss),
            format_bytes(st["last_uss"]), format_bytes(p.last.uss),
        )
    return table


if add_steady not in SUMMARY_EXTENSIONS:
    SUMMARY_EXTENSIONS.append(add_steady)
if add_cow_staleness not in SUMMARY_EXTENSIONS:
    SUMMARY_EXTENSIONS.append(add_cow_staleness)
if steady_section not in TEXT_SECTIONS:
    TEXT_SECTIONS.append(steady_section)
