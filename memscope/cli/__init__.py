"""The `memscope` command. Each subcommand is a thin module; errors become exit codes here, once.

Subcommands are listed once, in `_COMMANDS`, and a command's module is imported only when that
command runs or shows its own help: `memscope --help` loads none of them, and no command pays
for numpy, the COW scanner, rich or prometheus_client unless it uses them
(tests/unit/test_startup.py keeps that true).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from memscope import __version__
from memscope.errors import InputError, MemscopeError
from memscope.procfs import ProcfsError

__all__ = ["cli", "main"]

#: name -> ("module:attribute", first paragraph of its help). The group's help lists commands
#: from this table without importing them; a test checks it against the real docstrings.
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("memscope.cli.run:command",
            "Run COMMAND and record the memory of its whole process tree."),
    "attach": ("memscope.cli.attach:command",
               "Record PID and all its descendants until Ctrl-C, --duration, or PID's exit."),
    "report": ("memscope.cli.report:command",
               "Show what a recording holds: per-process memory, tree totals, growth."),
    "scan": ("memscope.cli.scan:command",
             "Scan PID's copy-on-write state against its parent: what it copied, which Python\n"
             "types live in the copied pages, why they were copied, and what would fix it."),
    "demo": ("memscope.cli.demo:command",
             "Record a pre-fork workload whose workers copy the preloaded memory, and report"
             " it."),
    "check": ("memscope.cli.check:command",
              "Judge rules on RECORDING(S); several recordings of one workload: the median is"
              " judged."),
    "baseline": ("memscope.cli.baseline:command",
                 "Save a recording's metrics as a baseline for `memscope check --baseline`."),
    "diff": ("memscope.cli.diff:command",
             "Compare two recordings: peak/last USS and PSS per role and per matched worker"
             " (by role\nand start order), ΣPSS vs ΣRSS, copied bytes by type, cause and site,"
             " leak rates; with\nthe absolute and relative change and whether it is within"
             " run-to-run noise. A side\nrecorded with `memscope run --repeat N -o X.memscope`"
             " (X.run1.memscope ...) is named X.memscope."),
}

_LISTING = "memscope.listing"  # ctx.meta flag: the group is formatting its commands table


def _report(error: MemscopeError) -> None:
    """One line (plus an optional hint) on stderr: never a traceback."""
    from memscope.termsafe import clean  # messages quote paths and commands: neutralised

    click.echo(f"memscope: error: {clean(error.message)}", err=True)
    if error.hint:
        click.echo(f"hint: {clean(error.hint)}", err=True)


class _Group(click.Group):
    """Commands come from `_COMMANDS`, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in _COMMANDS:
            return self.commands.get(cmd_name)
        target, help_text = _COMMANDS[cmd_name]
        if ctx.meta.get(_LISTING):  # a name and a help line are all the table needs
            return click.Command(cmd_name, help=help_text)
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        ctx.meta[_LISTING] = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            ctx.meta[_LISTING] = False

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MemscopeError as exc:
            _report(exc)
            raise click.exceptions.Exit(exc.exit_code) from None
        except ProcfsError as exc:  # e.g. a /proc file not in the kernel's format
            _report(InputError(str(exc)))
            raise click.exceptions.Exit(InputError.exit_code) from None


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


def main() -> None:
    cli(prog_name="memscope")
