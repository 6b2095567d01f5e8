"""Terminal report: rich tables of the tree, its true footprint, and the workers that grew."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import ClassVar, TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from memscope.analysis.summary import ProcessSummary, Summary
from memscope.report._base import ReportData, register
from memscope.units import format_bytes, format_duration, format_signed_bytes

__all__ = ["TEXT_SECTIONS", "TextReporter", "render_text"]

#: Extra sections (COW, leaks, ...) appended after the core tables, in order.
TEXT_SECTIONS: list[Callable[[Summary], RenderableType | None]] = []

_MAX_ROWS = 40


def _command(p: ProcessSummary, width: int = 48) -> Text:
    cmd = " ".join([p.cmdline[0].rsplit("/", 1)[-1], *p.cmdline[1:]]) if p.cmdline else "?"
    if len(cmd) > width:
        cmd = cmd[: width - 1] + "…"
    return Text(cmd)  # Text, not markup: names are controlled by the target


def _header(s: Summary) -> Text:
    started = dt.datetime.fromtimestamp(s.started_at).strftime("%Y-%m-%d %H:%M:%S")
    text = Text()
    text.append("memscope ", style="bold")
    text.append(f"{s.mode}: ")
    text.append(" ".join(s.command) or "?")
    text.append(f"\nstarted {started}, {format_duration(s.duration_s)}, ")
    text.append(f"{len(s.processes)} processes ({len(s.workers)} workers)")
    if s.exit_code is not None:
        text.append(f", exit status {s.exit_code}")
    sm = s.sampler
    text.append(
        f"\nsampler: {sm.ticks} ticks every {sm.mean_interval_s:.3f}s, {sm.rollups} full rollups,"
        f" {sm.cpu_s:.2f} CPU-s ({sm.cpu_fraction:.1%} of one core)"
    )
    return text


def _process_table(s: Summary) -> Table:
    table = Table(title="Processes (peak / last)", title_justify="left", expand=False)
    for col in ("pid", "role", "command", "lifetime", "exit"):
        table.add_column(col, no_wrap=True)
    for col in ("RSS", "PSS", "USS", "shared", "swap"):
        table.add_column(col, justify="right", no_wrap=True)
    ordered = sorted(s.processes, key=lambda p: (p.role != "root", -(p.peak.pss or 0)))
    for p in ordered[:_MAX_ROWS]:
        table.add_row(
            str(p.pid),
            p.role,
            _command(p),
            format_duration(p.lifetime(s.ended_at)),
            "-" if p.exit_code is None else str(p.exit_code),
            f"{format_bytes(p.peak.rss)} / {format_bytes(p.last.rss)}",
            f"{format_bytes(p.peak.pss)} / {format_bytes(p.last.pss)}",
            f"{format_bytes(p.peak.uss)} / {format_bytes(p.last.uss)}",
            format_bytes(p.last.shared),
            f"{format_bytes(p.peak.swap)} / {format_bytes(p.last.swap)}",
        )
    if len(ordered) > _MAX_ROWS:
        table.caption = f"{len(ordered) - _MAX_ROWS} more processes not shown (see --format json)"
    return table


def _totals(s: Summary) -> Text:
    t = s.totals
    text = Text()
    text.append("Tree totals\n", style="bold")
    text.append(f"  peak ΣPSS (true footprint): {format_bytes(t.peak_pss)}\n")
    text.append(f"  peak ΣRSS (what naive tools show): {format_bytes(t.peak_rss)}")
    ratio = t.rss_over_pss
    if ratio is not None:
        text.append(f"  = {ratio:.2f}x the true footprint")
    return text


def _growers(s: Summary) -> RenderableType | None:
    growers = s.growers()
    if not growers:
        return None
    table = Table(title="Workers whose USS grew most since birth", title_justify="left")
    for col in ("pid", "command", "USS at birth", "USS last", "growth"):
        table.add_column(col, justify="left" if col in ("pid", "command") else "right")
    for p in growers:
        table.add_row(
            str(p.pid),
            _command(p, 40),
            format_bytes(p.first_uss),
            format_bytes(p.last.uss),
            format_signed_bytes(p.uss_growth),
        )
    return table


def render_text(s: Summary) -> Group:
    parts: list[RenderableType] = [_header(s), _process_table(s), _totals(s)]
    for section in (_growers, *TEXT_SECTIONS):
        rendered = section(s)
        if rendered is not None:
            parts.append(rendered)
    return Group(*parts)


@register
class TextReporter:
    name: ClassVar[str] = "text"
    suffix: ClassVar[str] = ".txt"

    def __init__(self, console: Console | None = None) -> None:
        self.console = console

    def render(self, data: ReportData, out: TextIO) -> None:
        console = self.console or Console(file=out, width=140, highlight=False)
        console.print(render_text(data.summary))
