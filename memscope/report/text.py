"""Terminal report: rich tables of the tree, its true footprint, and the workers that grew."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import ClassVar, TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from memscope.analysis.summary import ProcessSummary, Summary
from memscope.frameworks import display_name
from memscope.report._base import ReportData
from memscope.report.cow_section import cow_section
from memscope.report.leak_section import cow_sites_section, leak_section, notes_section
from memscope.report.startmethod_section import start_method_section
from memscope.report.steady_section import steady_section
from memscope.termsafe import clean, clean_join, safe_text
from memscope.units import format_bytes, format_duration, format_signed_bytes

__all__ = ["SECTIONS", "TextReporter", "render_text"]

_MAX_ROWS = 40


def _command(p: ProcessSummary, width: int = 48) -> Text:
    argv = list(p.cmdline) or ["?"]
    if argv[0].startswith(("/", "./")) and " " not in argv[0]:
        argv[0] = argv[0].rsplit("/", 1)[-1]  # the program's name, not its path
    cmd = clean_join(argv)
    if len(cmd) > width:
        cmd = cmd[: width - 1] + "…"
    return safe_text(cmd)  # names are controlled by the target: never markup or escapes


def _header(s: Summary) -> Text:
    started = dt.datetime.fromtimestamp(s.started_at).strftime("%Y-%m-%d %H:%M:%S")
    text = Text()
    text.append("memscope ", style="bold")
    text.append(f"{clean(s.mode)}: ")
    text.append(clean_join(s.command) or "?")
    text.append(f"\nstarted {started}, {format_duration(s.duration_s)}, ")
    text.append(f"{len(s.processes)} processes ({len(s.workers)} workers)")
    if s.exit_code is not None:
        text.append(f", exit status {s.exit_code}")
    sm = s.sampler
    text.append(f"\nsampler: {sm.describe()}")
    return text


_PROCESS_COLUMNS = ("peak RSS", "peak PSS", "peak USS", "last USS", "shared", "peak swap")


def _process_table(s: Summary) -> Table:
    table = Table(title="Processes", title_justify="left", expand=False)
    table.add_column("pid", no_wrap=True, min_width=5)
    table.add_column("role", no_wrap=True, min_width=6, max_width=22, overflow="ellipsis")
    table.add_column("command", no_wrap=True, max_width=32, overflow="ellipsis")
    table.add_column("lifetime", no_wrap=True, min_width=8)
    table.add_column("exit", no_wrap=True, min_width=4)
    for col in _PROCESS_COLUMNS:
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    has_cow = any("cow" in p.extra for p in s.processes)
    if has_cow:
        table.add_column("copied", justify="right", no_wrap=True, min_width=6)
    ordered = sorted(s.processes, key=lambda p: (p.role not in ("wrapper", "root", "master"),
                                                  -(p.peak.pss or 0)))
    for p in ordered[:_MAX_ROWS]:
        copied = [_copied(p)] if has_cow else []
        table.add_row(
            str(p.pid),
            safe_text(display_name(p)),
            _command(p, 32),
            format_duration(p.lifetime(s.ended_at)),
            "-" if p.exit_code is None else str(p.exit_code),
            format_bytes(p.peak.rss),
            format_bytes(p.peak.pss),
            format_bytes(p.peak.uss),
            format_bytes(p.last.uss),
            format_bytes(p.last.shared),
            format_bytes(p.peak.swap),
            *copied,
        )
    notes = []
    if any("cow_stale" in p.extra for p in ordered[:_MAX_ROWS]):
        notes.append("* copied: the last COW scan is older than the process's last USS growth")
    if len(ordered) > _MAX_ROWS:
        notes.append(f"{len(ordered) - _MAX_ROWS} more processes not shown (see --format json)")
    if notes:
        table.caption = "; ".join(notes)
    return table


def _copied(p: ProcessSummary) -> str:
    """Copied bytes of the latest COW scan; `*` when that scan is stale."""
    cow = p.extra.get("cow")
    if not isinstance(cow, dict):
        return "-"
    return format_bytes(cow.get("copied_bytes")) + (" *" if "cow_stale" in p.extra else "")


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


#: The sections after the core tables, in order (each None when it has nothing to show).
SECTIONS: tuple[Callable[[Summary], RenderableType | None], ...] = (
    _growers, steady_section, cow_section, start_method_section, cow_sites_section,
    leak_section, notes_section,
)


def render_text(s: Summary) -> Group:
    parts: list[RenderableType] = [_header(s), _process_table(s), _totals(s)]
    for section in SECTIONS:
        rendered = section(s)
        if rendered is not None:
            parts.append(rendered)
    return Group(*parts)


class TextReporter:
    name: ClassVar[str] = "text"
    suffix: ClassVar[str] = ".txt"

    def __init__(self, console: Console | None = None) -> None:
        self.console = console

    def render(self, data: ReportData, out: TextIO) -> None:
        width = None if out.isatty() else 160  # files and pipes: wide enough for every column
        # emoji=False: no ":name:" in a cell is ever an emoji (and rich's emoji table, ~7 ms of
        # import, is not loaded).
        console = self.console or Console(file=out, width=width, highlight=False, emoji=False)
        console.print(render_text(data.summary))
