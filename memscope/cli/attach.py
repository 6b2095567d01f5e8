"""`memscope attach PID`: record a running process and its descendants, reading /proc only."""

from __future__ import annotations

import signal

import click

from memscope.cli._cow import cow_options, parse_interval_text
from memscope.cli._options import recording_options
from memscope.cli._sites import SitesRequest, sites_options, sites_session
from memscope.cli.report import print_summary
from memscope.features import FeatureOptions, build_hooks
from memscope.inject.attach import detach_agents, inject
from memscope.live import live_display, live_option
from memscope.metrics.cli import serve_metrics_option
from memscope.metrics.feed import MetricsFeed
from memscope.outputs import unique_path
from memscope.procfs import ProcFS
from memscope.session import (
    SessionOptions,
    check_output,
    check_target,
    default_output,
    record,
    signals_to,
)
from memscope.termsafe import clean

__all__ = ["command"]


@click.command("attach")
@click.argument("pid", type=click.IntRange(min=1))
@live_option
@recording_options
@serve_metrics_option
@cow_options
@sites_options
@click.option("-q", "--quiet", is_flag=True, help="Do not print the summary at the end.")
def command(
    pid: int,
    output: str | None,
    force: bool,
    interval: float,
    duration: float | None,
    quiet: bool,
    cow_interval: float | str | None,
    trace_sites: int | None,
    trace_workers: bool,
    leak_census: bool,
    serve_metrics: MetricsFeed | None = None,
) -> None:
    """Record PID and all its descendants until Ctrl-C, --duration, or PID's exit.

    Attaching only reads /proc: the target is not stopped, traced or changed. Reading
    another user's process needs root or CAP_SYS_PTRACE.

    --trace-sites is the exception: it injects memscope's agent into PID (sys.remote_exec on
    CPython 3.14+, ptrace on 3.8-3.13 while its main thread is blocked in a system call), which
    traces allocations until memscope detaches.
    Sites exist only for allocations made after the attach.

    \b
    Examples:
      memscope attach 4242
      memscope attach $(pgrep -o gunicorn) --duration 300 -o prod.memscope
    """
    if isinstance(cow_interval, str):  # ctx.invoke passes the default's text
        cow_interval = parse_interval_text(cow_interval)
    procfs = ProcFS()
    check_target(procfs, pid)
    cmdline = procfs.cmdline(pid) if procfs.exists(pid) else []
    path = output or unique_path(default_output(cmdline[0] if cmdline else "process", pid))
    check_output(path, force)
    stopping: list[int] = []
    click.echo(f"memscope: attached to {pid}, recording to {clean(path)} (Ctrl-C to stop)",
               err=True)
    with signals_to(stopping.append, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)), \
            live_display() as live, \
            sites_session(SitesRequest(trace_sites, trace_workers, leak_census)) as sites:
        if sites.run_dir is not None:
            inject(pid, sites.run_dir, sites.frames, sites.trace_workers, procfs=procfs)
            click.echo(
                f"memscope: agent injected into {pid}; allocation sites are recorded from now"
                " on (earlier allocations have none)",
                err=True,
            )
        features = FeatureOptions(
            cow_interval=cow_interval, run_dir=sites.run_dir, trace_workers=sites.trace_workers,
            leak_census=sites.leak_census, metrics=serve_metrics, live=live,
        )
        try:
            record(
                pid,
                SessionOptions(output=path, interval=interval, duration=duration, procfs=procfs,
                               hooks=build_hooks(features)),
                {"mode": "attach", "command": cmdline},
                should_stop=lambda: bool(stopping),
            )
        finally:
            if sites.run_dir is not None:
                detach_agents(sites.run_dir)
    if not quiet:
        print_summary(path)
    click.echo(f"memscope: recording saved to {clean(path)}", err=True)
