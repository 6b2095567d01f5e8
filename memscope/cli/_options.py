"""Options shared by the recording commands (`run`, `attach`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["recording_options"]

F = TypeVar("F", bound=Callable[..., Any])

_positive = click.FloatRange(min=0.001, max=3600)


def recording_options(func: F) -> F:
    """-o/--output, -i/--interval, --duration."""
    func = click.option(
        "--duration",
        type=click.FloatRange(min=0.01),
        default=None,
        help="Stop recording after this many seconds (run: then SIGTERM the command).",
    )(func)
    func = click.option(
        "-i",
        "--interval",
        type=_positive,
        default=0.2,
        show_default=True,
        help="Seconds between samples.",
    )(func)
    func = click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, writable=True),
        default=None,
        help="Recording file [default: memscope-NAME-PID.memscope].",
    )(func)
    return func
