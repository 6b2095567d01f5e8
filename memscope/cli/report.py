"""`memscope report PATH`: render a recording in any registered format."""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile

import click

from memscope.errors import InputError, RecordingError

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
    from memscope.recording import open_recording
    from memscope.report import ReportData, get_reporter

    reporter = get_reporter(fmt)
    rec = open_recording(path)
    try:
        try:
            with Console(stderr=True).status(f"reading {path}…"):  # a spinner on terminals
                data = ReportData(build_summary(rec), rec)
        except sqlite3.DatabaseError as exc:
            raise RecordingError(f"{path}: recording is corrupt or truncated ({exc})") from None
        if out_path is None or out_path == "-":
            reporter.render(data, sys.stdout)
            return
        directory = os.path.dirname(os.path.abspath(out_path))
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".memscope-report-")
        except OSError as exc:
            raise InputError(f"cannot write {out_path}: {exc.strerror}") from None
        try:
            # mkstemp creates 0600; give the file the mode open() would have (readers such
            # as node_exporter's textfile collector often run as another user).
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            with os.fdopen(fd, "w", encoding="utf-8") as out, \
                    Console(stderr=True).status(f"writing {out_path}…"):
                reporter.render(data, out)
            os.replace(tmp, out_path)
        except BaseException:
            os.unlink(tmp)
            raise
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
