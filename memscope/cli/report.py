"""`memscope report PATH`: render a recording in any registered format."""

from __future__ import annotations

import sys

import click

__all__ = ["FORMATS", "command", "print_summary", "write_report"]

#: The names in memscope.report.REPORTERS, written out so that `report --help` does not import
#: every reporter (numpy, rich, ...); tests/unit/test_startup.py keeps the two equal.
FORMATS = ("csv", "html", "json", "mprof", "prometheus", "text")


def write_report(path: str, fmt: str, out_path: str | None) -> None:
    """Render recording `path` as `fmt` to `out_path` (atomically), or to stdout."""
    # Imported here: `memscope report --help` and the recording commands' start-up need none
    # of this (numpy, rich and every reporter).
    from rich.console import Console

    from memscope.analysis.summary import build_summary
    from memscope.outputs import STDOUT, write_text_atomically
    from memscope.recording import open_recording
    from memscope.recording_check import damaged_recording
    from memscope.report import ReportData, get_reporter
    from memscope.termsafe import safe_text

    reporter = get_reporter(fmt)
    rec = open_recording(path)
    try:
        with damaged_recording(path):
            with Console(stderr=True).status(safe_text(f"reading {path}…")):  # a spinner
                data = ReportData(build_summary(rec), rec)
            if out_path is None or out_path == STDOUT:
                reporter.render(data, sys.stdout)
                return
            with Console(stderr=True).status(safe_text(f"writing {out_path}…")):
                write_text_atomically(out_path, lambda out: reporter.render(data, out))
    finally:
        rec.close()


def print_summary(path: str) -> None:
    write_report(path, "text", None)


@click.command("report")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "-f",
    "--format",
    "fmt",
    default="text",
    show_default=True,
    help=f"Output format: {', '.join(FORMATS)}.",
)
@click.option("-o", "--output", default=None, help="Write to this file instead of stdout.")
def command(path: str, fmt: str, output: str | None) -> None:
    """Show what a recording holds: per-process memory, tree totals, growth.

    \b
    Examples:
      memscope report run.memscope
      memscope report run.memscope --format json -o run.json
      memscope report run.memscope --format html -o report.html
      memscope report run.memscope --format prometheus -o /var/lib/node_exporter/memscope.prom
    """
    write_report(path, fmt, output)
