"""The `memscope` command. Each subcommand is a thin module; errors become exit codes here, once."""

from __future__ import annotations

from typing import Any

import click

from memscope import __version__
from memscope.errors import MemscopeError

__all__ = ["cli", "main"]


def _report(error: MemscopeError) -> None:
    """One line (plus an optional hint) on stderr: never a traceback."""
    click.echo(f"memscope: error: {error.message}", err=True)
    if error.hint:
        click.echo(f"hint: {error.hint}", err=True)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MemscopeError as exc:
            _report(exc)
            raise click.exceptions.Exit(exc.exit_code) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="memscope")
def cli() -> None:
    """Memory of forked process trees: true footprint (PSS/USS), copy-on-write, leaks.

    \b
    Examples:
      memscope run -- gunicorn --preload -w 8 app:app
      memscope attach 4242 --duration 60
      memscope report memscope-gunicorn-4242.memscope --format html -o report.html
      memscope scan 4243                      # one worker's copied pages, types, causes
      memscope check run.memscope -r 'worker.uss.peak <= 200MiB'
      memscope demo

    Exit codes: 0 ok (run: the command's own status), 1 a check limit was exceeded,
    2 usage or input error, 126/127 the command could not be run / was not found.
    """


def _register() -> None:
    from memscope.cli import attach, demo, report, run, scan

    for module in (run, attach, report, scan, demo):
        cli.add_command(module.command)
    from memscope.cli import baseline, check

    cli.add_command(check.command)
    cli.add_command(baseline.command)
    from memscope.cli import diff

    cli.add_command(diff.command)


_register()


def main() -> None:
    cli(prog_name="memscope")
