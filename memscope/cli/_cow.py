"""`--cow-interval` for the recording commands (the COW hook itself: memscope.features)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from memscope.cli._options import finite_seconds

__all__ = ["cow_options", "parse_cow_interval", "parse_interval_text"]

F = TypeVar("F", bound=Callable[..., Any])


def parse_cow_interval(ctx: click.Context, param: click.Parameter, value: str) -> float | None:
    """"auto" -> None (adaptive, within the CPU budget); else seconds between scans (0: off)."""
    return _parse(value)


def parse_interval_text(value: str) -> float | None:
    """The option's text ("auto", "0", "2.5") as the value FeatureOptions takes."""
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

