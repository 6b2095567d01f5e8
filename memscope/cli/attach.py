"""`memscope attach PID`: record a running process and its descendants, reading /proc only."""

from __future__ import annotations

import signal

import click

from memscope.cli._cow import cow_options, cow_scheduler
from memscope.cli._options import recording_options
from memscope.cli.report import print_summary
from memscope.procfs import ProcFS
from memscope.session import SessionOptions, check_target, default_output, record, signals_to

__all__ = ["command"]


@click.command("attach")
@click.argument("pid", type=click.IntRange(min=1))
@recording_options
@cow_options
@click.option("-q", "--quiet", is_flag=True, help="Do not print the summary at the end.")
def command(
    pid: int,
    output: str | None,
    interval: float,
    duration: float | None,
    quiet: bool,
    cow_interval: float | None,
) -> None:
    """Record PID and all its descendants until Ctrl-C, --duration, or PID's exit.

    Attaching only reads /proc: the target is not stopped, traced or changed. Reading
    another user's process needs root or CAP_SYS_PTRACE.

    \b
    Examples:
      memscope attach 4242
      memscope attach $(pgrep -o gunicorn) --duration 300 -o prod.memscope
    """
    procfs = ProcFS()
    check_target(procfs, pid)
    cmdline = procfs.cmdline(pid) if procfs.exists(pid) else []
    path = output or default_output(cmdline[0] if cmdline else "process", pid)
    stopping: list[int] = []
    click.echo(f"memscope: attached to {pid}, recording to {path} (Ctrl-C to stop)", err=True)
    with (
        signals_to(stopping.append, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)),
        cow_scheduler(cow_interval) as scheduler,
    ):
        record(
            pid,
            SessionOptions(
                output=path, interval=interval, duration=duration, procfs=procfs,
                hooks=[scheduler],
            ),
            {"mode": "attach", "command": cmdline},
            should_stop=lambda: bool(stopping),
        )
    if not quiet:
        print_summary(path)
    click.echo(f"memscope: recording saved to {path}", err=True)
