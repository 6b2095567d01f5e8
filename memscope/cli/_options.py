"""Options shared by the recording commands (`run`, `attach`), and the finite float type."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["FiniteFloat", "finite_seconds", "recording_options"]

F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloat(click.FloatRange):
    """A float option that refuses NaN and infinities (`-i nan` would spin a core)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


def finite_seconds(value: str) -> float:
    """float(value) for option callbacks; ValueError for text, NaN and infinities."""
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite number")
    return seconds


_positive = FiniteFloat(min=0.001, max=3600)


def recording_options(func: F) -> F:
    """-o/--output, --force, -i/--interval, --duration."""
    func = click.option(
        "--duration",
        type=FiniteFloat(min=0.01),
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
        "--force",
        is_flag=True,
        help="Replace an existing recording at --output (never any other kind of file).",
    )(func)
    func = click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False),
        default=None,
        help="Recording file [default: memscope-NAME-PID.memscope]; an existing one needs --force.",
    )(func)
    return func
