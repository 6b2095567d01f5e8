"""`memscope demo`: record the preload_list fixture (COW after a preload) and report it."""

from __future__ import annotations

import os
import sys

import click

from memscope.cli import run
from memscope.errors import InputError

__all__ = ["command", "fixture_path"]


def fixture_path(name: str) -> str:
    """Path of a fixture script in the source checkout memscope runs from."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "fixtures", f"{name}.py")
    if not os.path.isfile(path):
        raise InputError(
            f"fixture {name!r} not found at {path}",
            hint="the demo runs from a source checkout: git clone, then pip install -e .",
        )
    return path


@click.command("demo")
@click.option("-w", "--workers", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--size",
    type=click.IntRange(1000),
    default=2_000_000,
    show_default=True,
    help="Ints the parent preloads before forking.",
)
@click.option("-o", "--output", default="memscope-demo.memscope", show_default=True)
@click.pass_context
def command(ctx: click.Context, workers: int, size: int, output: str) -> None:
    """Record a pre-fork workload whose workers copy the preloaded memory, and report it.

    The parent builds a list of SIZE ints and forks WORKERS children that iterate over it.
    Refcount updates copy every page they touch, so each worker's USS grows by about
    31 bytes per int although nothing was allocated after the fork.
    """
    argv = (
        sys.executable,
        fixture_path("preload_list"),
        "--workers",
        str(workers),
        "--size",
        str(size),
    )
    ctx.invoke(run.command, argv=argv, output=output, interval=0.2, duration=None, quiet=False)
