"""Leak, COW-sites and notes sections of the text report (listed in
memscope.report.text.SECTIONS)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from memscope.analysis.summary import Summary
from memscope.termsafe import safe_text
from memscope.units import format_bytes

__all__ = ["cow_sites_section", "leak_section", "notes_section"]


def _rate(v: float | None) -> str:
    if v is None:
        return "-"
    return ("-" if v < 0 else "") + format_bytes(int(abs(v))) + "/s"


def _siblings(sib: dict[str, Any]) -> str:
    if not sib["count"]:
        return "-"
    return f"{sib['count']} (median {_rate(sib['median_bytes_per_s'])})"


def leak_section(s: Summary) -> RenderableType | None:
    rows = [(p, p.extra["leak"]) for p in s.processes if "leak" in p.extra]
    if not rows:
        return None
    if all(leak["verdict"] == "insufficient-data" for _, leak in rows):
        # One line instead of a table of dashes (short runs, such as the demo).
        return Text(
            f"Leaks: not enough samples after warm-up to judge any of the {len(rows)}"
            " processes (record longer; JSON has the per-process details)"
        )
    table = Table(title="Leaks: USS growth after warm-up (Theil–Sen)", title_justify="left")
    for col in ("pid", "role", "verdict", "rate", "95% interval", "confidence", "siblings"):
        table.add_column(col, justify="left" if col in ("role", "verdict") else "right")
    table.add_column("growing (site or type)")
    for p, leak in rows:
        ci = leak["ci_bytes_per_s"]
        sib = leak["siblings"]
        growing = ", ".join(
            f"{g.get('site') or g.get('type')} +{_rate(g['bytes_per_s'])}"
            for g in leak["growing"][:3]
        )
        table.add_row(
            str(p.pid),
            safe_text(p.role),
            safe_text(leak["verdict"]),
            _rate(leak["slope_bytes_per_s"]),
            "-" if ci is None else f"{_rate(ci[0])} .. {_rate(ci[1])}",
            "-" if leak["confidence"] is None else f"{leak['confidence']:.2f}",
            _siblings(sib),
            safe_text(growing or "-"),
        )
    return table


def cow_sites_section(s: Summary) -> RenderableType | None:
    """Copied bytes by allocation site, and under the table how each worker's sites were
    resolved: memscope's time, the share of copied pages parsed and of blocks looked up,
    resolved / estimated / untraced bytes, or why it failed."""
    if s.sites is None:
        return None
    parts: list[RenderableType] = []
    if s.sites.total:
        table = Table(title="Copied memory by allocation site (all workers)", title_justify="left")
        for col in ("site", "copied", "objects", "workers"):
            table.add_column(col, justify="left" if col == "site" else "right")
        for r in s.sites.total[:10]:
            table.add_row(safe_text(r["site"]), format_bytes(r["bytes"]), f"{r['objects']:,}",
                          str(r["workers"]))
        parts.append(table)
    parts.extend(safe_text("  " + r.describe()) for r in s.sites.resolution)
    return Group(*parts)


def notes_section(s: Summary) -> RenderableType | None:
    """What features could not do, naming the affected workers."""
    if not s.notes:
        return None
    text = Text()
    text.append("Notes\n", style="bold")
    for note in s.notes:
        text.append(f"  - {note.describe()}\n")
    return text
