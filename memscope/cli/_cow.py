"""`--cow-interval` for the recording commands, and the COW scan hook it configures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from memscope.cli._options import finite_seconds
from memscope.cow.schedule import CowScheduler, install_sigusr1
from memscope.live import COPIED_SOURCES
from memscope.sampler import Sampler
from memscope.tree import Member

__all__ = ["cow_options", "cow_scheduler", "parse_cow_interval"]

F = TypeVar("F", bound=Callable[..., Any])


def parse_cow_interval(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    """"auto" -> None (adaptive, within the CPU budget); else seconds between scans (0: off)."""
    return _parse(value)


def _parse(value: str) -> float | None:
    if value.strip().lower() == "auto":
        return None
    try:
        seconds = finite_seconds(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not 'auto' or a number of seconds") from None
    if seconds < 0:
        raise click.BadParameter("must be >= 0 (0 disables scheduled scans)")
    return seconds


def cow_options(func: F) -> F:
    return click.option(
        "--cow-interval",
        metavar="auto|SECONDS",
        default="auto",
        callback=parse_cow_interval,
        show_default=True,
        help=(
            "Copy-on-write scans of each forked worker: 'auto' scans when a worker's USS moves"
            " by 1 MiB, within a 5% CPU budget; a number scans every N seconds; 0 disables"
            " scheduled scans. SIGUSR1 to memscope scans every worker at once."
        ),
    )(func)


@contextmanager
def cow_scheduler(interval: float | str | None) -> Iterator[CowScheduler]:
    """A scheduler for the sampler's hooks, with SIGUSR1 wired to on-demand scans and the
    live view's "copied" column fed from the latest scans. `interval` as parsed by the
    option, or its raw text (`ctx.invoke` passes defaults without running callbacks)."""
    if isinstance(interval, str):
        interval = _parse(interval)
    scheduler = CowScheduler(interval=interval)
    restore = install_sigusr1(scheduler)

    def copied(sampler: Sampler, member: Member) -> int | None:
        return scheduler.copied.get(member.key)

    COPIED_SOURCES.append(copied)
    try:
        yield scheduler
    finally:
        COPIED_SOURCES.remove(copied)
        restore()
        scheduler.close()
