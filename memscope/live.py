"""`--live` for `run` and `attach`: a rich Live table of the tree, refreshed every tick.

Columns: pid, role, RSS, PSS, USS, shared %, copied, and a USS trend sparkline. Rows are sorted
by USS (largest first) and cut to what fits the terminal; a summary line accounts for the rest,
and a totals line gives ΣRSS against ΣPSS for the whole tree. Values come from the sampler's
latest full rollup of each process (`TickContext.latest`), so they move as the CPU budget
allows. "Copied" is what the COW hook, which ticks before this one, put in `TickContext.copied`
(the latest scan, or the estimate since it when larger); '-' when COW scans are off.

Wiring (one decorator, one context manager per command; the view is a hook, see
memscope.features):

    @live_option
    def command(...):
        with signals_to(...), live_display() as live:
            record(..., hooks=build_hooks(FeatureOptions(live=live, ...)))

The table is drawn on stderr, so the report printed afterwards on stdout stays clean. rich is
imported only when the table is drawn: `run` and `attach` without --live do not load it.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from memscope.analysis.staleness import significant
from memscope.recording import RecordingWriter
from memscope.sampler import Session, TickContext
from memscope.units import format_bytes

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["LiveRow", "LiveView", "build_table", "live_display", "live_option", "sparkline"]

F = TypeVar("F", bound=Callable[..., Any])

_BLOCKS = "▁▂▃▄▅▆▇█"
_TREND = 24  # samples kept per process for the sparkline
_live_requested: contextvars.ContextVar[bool] = contextvars.ContextVar("live", default=False)


def sparkline(values: Sequence[float], width: int = 12) -> str:
    """The last `width` values as block characters, scaled to their own min..max."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return _BLOCKS[0] * len(vals)
    top = len(_BLOCKS) - 1
    return "".join(_BLOCKS[round((v - lo) / (hi - lo) * top)] for v in vals)


@dataclass(slots=True)
class LiveRow:
    pid: int
    role: str
    rss: int | None = None
    pss: int | None = None
    uss: int | None = None
    shared: int | None = None
    copied: int | None = None
    trend: list[int] = field(default_factory=list)
    stale: bool = False  # USS grew significantly since the copied value last changed


def _total(rows: Sequence[LiveRow], attr: str) -> int | None:
    values = [getattr(r, attr) for r in rows if getattr(r, attr) is not None]
    return sum(values) if values else None


def build_table(rows: Sequence[LiveRow], max_rows: int, elapsed: float | None = None) -> Table:
    """Rows sorted by USS (unknown last), cut to max_rows with one line for the rest."""
    from rich.table import Table
    from rich.text import Text

    ordered = sorted(rows, key=lambda r: (r.uss is None, -(r.uss or 0), r.pid))
    shown = ordered[: max(max_rows, 1)]
    rest = ordered[len(shown):]
    title = f"memscope live: {len(rows)} processes"
    if elapsed is not None:
        title += f", {elapsed:.0f}s"
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("role", no_wrap=True)
    for col in ("RSS", "PSS", "USS", "shared %", "copied"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("USS trend", no_wrap=True)
    for r in shown:
        share = f"{r.shared / r.rss:.0%}" if r.shared is not None and r.rss else "-"
        table.add_row(
            str(r.pid), r.role, format_bytes(r.rss), format_bytes(r.pss), format_bytes(r.uss),
            share, format_bytes(r.copied) + (" *" if r.stale else ""),
            Text(sparkline(r.trend), style="cyan"),
        )
    if rest:
        table.add_row(
            "…", Text(f"{len(rest)} more", style="dim"), format_bytes(_total(rest, "rss")),
            format_bytes(_total(rest, "pss")), format_bytes(_total(rest, "uss")), "",
            format_bytes(_total(rest, "copied")), "", style="dim",
        )
    table.add_section()
    table.add_row(
        "Σ", "tree", format_bytes(_total(rows, "rss")), format_bytes(_total(rows, "pss")),
        format_bytes(_total(rows, "uss")), "", format_bytes(_total(rows, "copied")), "",
        style="bold",
    )
    pss, rss = _total(rows, "pss"), _total(rows, "rss")
    if pss and rss:
        table.caption = f"ΣRSS is {rss / pss:.2f}x the true footprint ΣPSS"
    return table


class LiveView:
    """Collects rows from the sampler each tick and redraws the table."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.live import Live

        self.console = console
        self.clock = clock
        self.started = clock()
        self.trends: dict[int, deque[int]] = {}
        self.scanned: dict[int, tuple[int, int]] = {}  # record id -> (copied, USS then)
        self.live = Live(console=console, auto_refresh=False, transient=False,
                         redirect_stdout=False, redirect_stderr=False)

    def rows(self, ctx: TickContext) -> list[LiveRow]:
        rows = []
        alive = set()
        for member in list(ctx.members):
            if member.exited or member.record_id < 0:
                continue
            alive.add(member.record_id)
            row = LiveRow(member.pid, member.role)
            rollup = ctx.latest.get(member.record_id)
            if rollup is not None:
                row.rss, row.pss, row.uss = rollup.rss, rollup.pss, rollup.uss
                row.shared = rollup.shared_clean + rollup.shared_dirty
                trend = self.trends.setdefault(member.record_id, deque(maxlen=_TREND))
                trend.append(rollup.uss)
                row.trend = list(trend)
            row.copied = ctx.copied.get(member.record_id)
            row.stale = self._stale(member.record_id, row.copied, row.uss)
            rows.append(row)
        for gone in set(self.trends) - alive:
            del self.trends[gone]
        for gone in set(self.scanned) - alive:
            del self.scanned[gone]
        return rows

    def _stale(self, key: int, copied: int | None, uss: int | None) -> bool:
        """A copied value is stale once USS grew significantly (analysis.staleness) since the
        tick it changed: the scan behind it did not see that memory."""
        if copied is None or uss is None:
            return False
        seen = self.scanned.get(key)
        if seen is None or seen[0] != copied:
            self.scanned[key] = (copied, uss)
            return False
        return significant(seen[1], uss)

    def start(self, session: Session) -> None:
        pass

    def close(self, writer: RecordingWriter) -> None:
        pass

    def tick(self, ctx: TickContext) -> None:
        from rich.console import Group
        from rich.text import Text

        max_rows = max(self.console.size.height - 10, 5)
        table = build_table(self.rows(ctx), max_rows, self.clock() - self.started)
        hint = Text("Ctrl-C stops the recording and prints the report", style="dim")
        self.live.update(Group(table, hint), refresh=True)


def live_option(func: F) -> F:
    """Add --live to a recording command; read back inside it by `live_display()`."""

    @functools.wraps(func)
    def wrapper(*args: Any, live: bool = False, **kwargs: Any) -> Any:
        token = _live_requested.set(live)
        try:
            return func(*args, **kwargs)
        finally:
            _live_requested.reset(token)

    option = click.option("--live", is_flag=True,
                          help="Show a live table of the tree while recording (on stderr).")
    return option(wrapper)  # type: ignore[return-value]


@contextmanager
def live_display(console: Console | None = None) -> Iterator[LiveView | None]:
    """Yield the view (a hook drawing the live table) if --live was given, else None."""
    if not _live_requested.get():
        yield None
        return
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    view = LiveView(console)
    with view.live:
        yield view
