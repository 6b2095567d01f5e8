"""Steady-state section of the text report (the figures: memscope.analysis.steady)."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table

from memscope.analysis.summary import Summary
from memscope.units import format_bytes, format_duration

__all__ = ["steady_section"]


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

