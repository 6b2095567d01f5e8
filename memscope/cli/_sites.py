"""`--trace-sites[=FRAMES]`, `--trace-workers` and `--leak-census` for the recording commands,
and the agent run directory they need (the sites/leaks hook itself: memscope.features)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from memscope.errors import UsageError
from memscope.inject import DEFAULT_FRAMES, make_run_dir, remove_run_dir

__all__ = ["SitesRequest", "SitesSession", "sites_options", "sites_session"]

F = TypeVar("F", bound=Callable[..., Any])


def sites_options(func: F) -> F:
    func = click.option(
        "--leak-census",
        is_flag=True,
        help="Name the growing types of leaking processes: a periodic type census of each"
        " process's heap, read from outside (/proc/PID/mem; the target is not touched) on a"
        " background thread within a 5% CPU budget.",
    )(func)
    func = click.option(
        "--trace-workers",
        is_flag=True,
        help="With --trace-sites: keep tracing in forked workers too, so leak reports name"
        " growing lines there (costs ~4-8x on allocation-heavy worker code).",
    )(func)
    func = click.option(
        "--trace-sites",
        type=click.IntRange(min=1, max=1000),
        is_flag=False,
        flag_value=DEFAULT_FRAMES,
        default=None,
        metavar="[FRAMES]",
        help=f"Load memscope's agent into the Python processes and record allocation sites"
        f" with tracemalloc (FRAMES deep, default {DEFAULT_FRAMES}) in the root; forked"
        " workers run untraced and their copied memory is resolved to the root's sites."
        " Price: tracemalloc makes the root's allocations ~16x slower while it traces"
        " (a 2M-int preload: 0.22 s -> 3.6 s CPU on 3.11) and keeps ~50 bytes of tables per"
        " traced block; FRAMES=1 saves little when allocations happen at shallow depth"
        " (docs/performance.md). Under `run`, a root exiting right after its workers waits"
        " (at most 60 s) until their copied pages are resolved (docs/agent.md).",
    )(func)
    return func


@dataclass(frozen=True)
class SitesRequest:
    trace_sites: int | None  # FRAMES, or None when --trace-sites is not given
    trace_workers: bool = False
    leak_census: bool = False


@dataclass(frozen=True)
class SitesSession:
    run_dir: str | None  # the agents' run directory, when --trace-sites is on
    frames: int
    trace_workers: bool
    leak_census: bool


@contextmanager
def sites_session(request: SitesRequest) -> Iterator[SitesSession]:
    """A private agent run directory (when sites are on), removed after."""
    trace_sites, trace_workers, leak_census = (
        request.trace_sites, request.trace_workers, request.leak_census
    )
    if trace_workers and trace_sites is None:
        raise UsageError("--trace-workers needs --trace-sites")
    run_dir = make_run_dir() if trace_sites is not None else None
    try:
        yield SitesSession(run_dir, trace_sites or 0, trace_workers, leak_census)
    finally:
        if run_dir is not None:
            remove_run_dir(run_dir)
