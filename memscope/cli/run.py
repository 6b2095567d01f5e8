"""`memscope run -- COMMAND`: start a command and record its whole process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import click

from memscope.cli._cow import cow_options, parse_interval_text
from memscope.cli._options import recording_options
from memscope.cli._sites import SitesRequest, sites_options, sites_session
from memscope.cli.check import CheckRequest, check_options
from memscope.cli.report import print_summary
from memscope.errors import CommandNotFound, MemscopeError
from memscope.features import FeatureOptions, build_hooks
from memscope.inject import agent_env
from memscope.lifetime import become_subreaper, child_setup, parse_signal
from memscope.live import live_display, live_option
from memscope.metrics.cli import serve_metrics_option
from memscope.metrics.feed import MetricsFeed
from memscope.outputs import unique_path
from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter
from memscope.sampler import Sampler
from memscope.session import (
    SessionOptions,
    check_output,
    default_output,
    follow_births,
    record,
    signals_to,
    stop_process,
)
from memscope.termsafe import clean, clean_join

__all__ = ["command", "exit_status", "spawn"]

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_GRACE_S = 10.0


class CommandNotExecutable(MemscopeError):
    exit_code = 126


def exit_status(returncode: int) -> int:
    """Popen's returncode as a shell would report it: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def spawn(argv: list[str], env: dict[str, str] | None = None,
          kill_signal: int | None = None) -> subprocess.Popen[bytes]:
    """Start the command in its own process group (as `timeout` does).

    A terminal's Ctrl-C then reaches memscope alone, which forwards it once to the whole
    group, so the command sees exactly the signals it would have seen without memscope.
    If memscope dies, even by SIGKILL, the command gets `kill_signal` (memscope.lifetime).
    Called from the main thread: the parent-death signal follows the spawning thread.
    """
    try:
        return subprocess.Popen(argv, preexec_fn=child_setup(kill_signal), env=env)
    except FileNotFoundError:
        raise CommandNotFound(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise CommandNotExecutable(f"command is not executable: {argv[0]}") from None
    except OSError as exc:
        raise CommandNotExecutable(f"cannot run {argv[0]}: {exc.strerror}") from None


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@live_option
@recording_options
@serve_metrics_option
@check_options
@cow_options
@sites_options
@click.option("-q", "--quiet", is_flag=True, help="Do not print the summary at the end.")
@click.option("--kill-signal", default="TERM", callback=parse_signal, show_default=True,
              metavar="SIG",
              help="Signal COMMAND gets if memscope dies, even by SIGKILL (PR_SET_PDEATHSIG).")
@click.option("--keep-running", is_flag=True,
              help="Leave COMMAND running if memscope dies (no --kill-signal).")
@click.argument(
    "argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- COMMAND [ARGS]..."
)
def command(
    argv: tuple[str, ...],
    output: str | None,
    force: bool,
    interval: float,
    duration: float | None,
    quiet: bool,
    kill_signal: int,
    keep_running: bool,
    check: CheckRequest | None,
    cow_interval: float | str | None,
    trace_sites: int | None,
    trace_workers: bool,
    leak_census: bool,
    serve_metrics: MetricsFeed | None = None,
) -> None:
    """Run COMMAND and record the memory of its whole process tree.

    Follows every fork, fork+exec and grandchild. SIGINT, SIGTERM and SIGHUP sent to
    memscope are forwarded to COMMAND. memscope exits with COMMAND's exit status
    (128+N if it was killed by signal N). With --check (docs/ci.md): 1 if a rule is
    broken, 2 if one cannot be checked, else COMMAND's status (0 if --duration stopped it).

    \b
    Examples:
      memscope run -- python fixtures/preload_list.py --workers 4
      memscope run -o web.memscope --duration 60 -- gunicorn --preload -w 8 app:app
      memscope run -i 0.5 -- celery -A proj worker --concurrency 4
      memscope run --duration 60 --check 'worker.uss.peak <= 200MiB' -- gunicorn app:app
    """
    args = list(argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise click.UsageError("missing COMMAND after --")
    if isinstance(cow_interval, str):  # ctx.invoke passes the default's text
        cow_interval = parse_interval_text(cow_interval)
    extras = _Extras(cow_interval, SitesRequest(trace_sites, trace_workers, leak_census),
                     serve_metrics, None if keep_running else kill_signal, force)
    if check is None:
        sys.exit(_record(args, output, interval, duration, quiet, extras)[1])
    runs = [_record(args, path, interval, duration, quiet, extras)
            for path in (check.outputs(output) if output else [None] * check.repeat)]
    verdict = check.judge([path for path, _, _ in runs])
    # A broken rule decides; else a command that failed on its own (not stopped by --duration).
    sys.exit(verdict or next((code for _, code, stopped in runs if code and not stopped), 0))


@dataclass(frozen=True)
class _Extras:
    cow_interval: float | None
    sites: SitesRequest
    metrics: MetricsFeed | None
    kill_signal: int | None = signal.SIGTERM
    force: bool = False


def _record(
    args: list[str],
    output: str | None,
    interval: float,
    duration: float | None,
    quiet: bool,
    extras: _Extras,
) -> tuple[str, int, bool]:
    """Run the command once, recording it: (recording path, exit status, whether --duration
    ended the command)."""
    # Before anything starts; default names never collide with an earlier recording.
    check_output(output or unique_path(default_output(args[0], 0)), extras.force)
    stack = contextlib.ExitStack()
    sites = stack.enter_context(sites_session(extras.sites))
    follower = None
    try:
        env = None
        if sites.run_dir is not None:
            env = agent_env(os.environ, sites.run_dir, sites.frames, sites.trace_workers)
        live = stack.enter_context(live_display())
        # The hooks (and the modules they import) are built before the command starts, so
        # memscope forwards signals from the moment the command can receive them.
        hooks = build_hooks(FeatureOptions(
            cow_interval=extras.cow_interval, run_dir=sites.run_dir,
            trace_workers=sites.trace_workers, leak_census=sites.leak_census,
            hold_exit=True, metrics=extras.metrics, live=live,
        ))
        subreaper = become_subreaper()
        follower, births = follow_births(ProcFS())  # before the command can fork
        proc = spawn(args, env, extras.kill_signal)
    except BaseException:
        if follower is not None:
            follower.close()
        stack.close()
        raise
    path = output or unique_path(default_output(args[0], proc.pid))
    options = SessionOptions(output=path, interval=interval, duration=duration, hooks=hooks,
                             follower=follower, subreaper=subreaper)
    click.echo(f"memscope: recording {clean_join(args)} (pid {proc.pid}) to {clean(path)}",
               err=True)

    signalled: list[float] = []  # when the root was told to stop (steady-state figures)

    def forward(signum: int) -> None:
        if proc.poll() is not None:
            return
        signalled.append(time.time())
        if signum == signal.SIGINT:  # what a terminal's Ctrl-C would have done
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)

    stopped = False

    def finalize(writer: RecordingWriter, sampler: Sampler) -> None:
        nonlocal stopped
        if proc.poll() is None:  # duration ended, or we are being torn down
            stopped = True
            stop_process(proc, signal.SIGTERM, _GRACE_S)
        code = exit_status(proc.wait())
        root = sampler.tree.root
        if root.record_id >= 0:
            writer.mark_exited(root.record_id, sampler.clock(), proc.returncode)
        writer.set_meta(exit_code=code)
        if signalled:
            writer.set_meta(signalled_at=signalled[0])

    try:
        with stack, signals_to(forward, FORWARDED):
            record(
                proc.pid,
                options,
                {"mode": "run", "command": args, "births_tracked": births,
                 "kill_signal": extras.kill_signal},
                should_stop=lambda: proc.poll() is not None,
                finalize=finalize,
            )
    finally:
        if proc.poll() is None:
            stop_process(proc, signal.SIGTERM, _GRACE_S)
    code = exit_status(proc.returncode)
    if not quiet:
        print_summary(path)
    click.echo(f"memscope: recording saved to {clean(path)}", err=True)
    return path, code, stopped and duration is not None
