"""A recording session: open the file, sample a tree until told to stop, close the file.

Shared by `run` (which owns the root process) and `attach` (which does not).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from memscope import __version__
from memscope._malloc import return_freed_buffers
from memscope.errors import RecordingError, TargetError
from memscope.follow import EventFollower
from memscope.outputs import prepare_recording_output
from memscope.procevents import ConnectorUnavailable, ProcConnector
from memscope.procfs import AccessDenied, ProcessGone, ProcFS
from memscope.recording import RecordingWriter
from memscope.sampler import Hook, Sampler
from memscope.tree import ProcessTree

__all__ = [
    "SessionOptions",
    "check_output",
    "check_target",
    "default_output",
    "follow_births",
    "record",
    "signals_to",
    "stop_process",
]

_PTRACE_HINT = (
    "run memscope as the same user as the target, or grant CAP_SYS_PTRACE"
    " (e.g. sudo memscope attach PID)"
)


@dataclass(slots=True)
class SessionOptions:
    output: str
    interval: float = 0.2
    duration: float | None = None
    budget: float = 0.05
    hooks: Sequence[Hook] = field(default_factory=list)  # memscope.features.build_hooks()
    procfs: ProcFS = field(default_factory=ProcFS)
    #: kernel process events, opened before the root was started (`run`); else opened here
    follower: EventFollower | None = None
    subreaper: bool = False  # we are the tree's child subreaper: adopt and reap orphans


def follow_births(procfs: ProcFS) -> tuple[EventFollower | None, str]:
    """Follow the kernel's process events if allowed: (follower or None, how births are
    tracked, as recorded in meta `births_tracked`)."""
    try:
        return EventFollower(ProcConnector.open(), procfs), "proc-connector+scan"
    except ConnectorUnavailable as exc:
        return None, f"scan ({exc})"


def default_output(name: str, pid: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.basename(name))[:40]
    return f"memscope-{safe or 'process'}-{pid}.memscope"


def stop_process(proc: subprocess.Popen[Any], signum: int, grace_s: float) -> None:
    """Send `signum`, wait up to `grace_s` seconds, then SIGKILL; the process is reaped."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signum)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check_output(path: str, force: bool = False) -> None:
    """Raise unless a recording can be created at `path` (before starting); `force` removes an
    old recording there (never anything else: memscope.outputs)."""
    prepare_recording_output(path, force)


def check_target(procfs: ProcFS, pid: int) -> None:
    """Raise TargetError unless `pid` is a live process whose memory we may read."""
    try:
        stat = procfs.stat(pid)
        if stat.state == "Z":
            raise TargetError(f"process {pid} is a zombie (exited, not yet reaped)")
        if stat.kernel_thread:
            raise TargetError(f"process {pid} ({stat.comm}) is a kernel thread: it has no"
                              " user-space memory to record")
        if pid == os.getpid():
            raise TargetError(f"process {pid} is this memscope itself; attach to another"
                              " process")
        procfs.rollup(pid)
    except ProcessGone:
        raise TargetError(f"no process with PID {pid}") from None
    except AccessDenied:
        raise TargetError(f"permission denied reading process {pid}", hint=_PTRACE_HINT) from None


@contextmanager
def signals_to(handler: Callable[[int], None], signums: Sequence[int]) -> Iterator[None]:
    """Route `signums` to handler(signum) for the duration of the block."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        handler(signum)

    previous = {s: signal.signal(s, on_signal) for s in signums}
    try:
        yield
    finally:
        for s, prev in previous.items():
            signal.signal(s, prev)


def record(
    root_pid: int,
    options: SessionOptions,
    meta: dict[str, Any],
    should_stop: Callable[[], bool],
    finalize: Callable[[RecordingWriter, Sampler], None] | None = None,
) -> Sampler:
    """Sample the tree under `root_pid` into `options.output` until should_stop() or it exits.

    The file is committed as it goes, so whatever ends this process, the recording so far is
    readable. At the end, in this order: every hook's close() persists its finished and
    in-flight work (the COW hook scans the workers still alive), then `finalize` (e.g. `run`
    stops its command), then the writer closes. Returns the sampler (for its statistics).
    """
    procfs = options.procfs
    return_freed_buffers()  # scans' freed buffers must not stay resident (memscope/_malloc.py)
    follower, births = options.follower, "proc-connector+scan"
    if follower is None:
        follower, births = follow_births(procfs)
    try:
        tree = ProcessTree(procfs, root_pid, exclude={os.getpid()}, follower=follower,
                           adopt_from=os.getpid() if options.subreaper else None)
        meta = {"births_tracked": births, "subreaper": options.subreaper, **meta}
        started = time.time()
        return _record(tree, options, meta, started, should_stop, finalize)
    except sqlite3.Error as exc:  # disk full, file removed or locked under us, ...
        raise RecordingError(f"{options.output}: cannot write the recording ({exc})") from None
    finally:
        if follower is not None:
            follower.close()


def _record(
    tree: ProcessTree,
    options: SessionOptions,
    meta: dict[str, Any],
    started: float,
    should_stop: Callable[[], bool],
    finalize: Callable[[RecordingWriter, Sampler], None] | None,
) -> Sampler:
    procfs = options.procfs
    root_pid = tree.root.pid
    writer = RecordingWriter(
        options.output,
        {
            "memscope_version": __version__,
            "started_at": started,
            "interval_s": options.interval,
            "root_pid": root_pid,
            "budget": options.budget,
            **meta,
        },
    )
    sampler = Sampler(procfs, tree, writer, budget=options.budget, hooks=options.hooks)
    deadline = None if options.duration is None else started + options.duration

    def stop() -> bool:
        if tree.follower is not None:
            writer.set_meta(events_cpu_s=round(tree.follower.cpu_s, 6))
            if tree.follower.overruns:
                writer.set_meta(event_overruns=tree.follower.overruns)
        if deadline is not None and time.time() >= deadline:
            return True
        return should_stop()

    try:
        sampler.start_hooks()
        sampler.run(options.interval, stop)
    except AccessDenied as exc:
        raise TargetError(str(exc), hint=_PTRACE_HINT) from None
    finally:
        try:
            sampler.close_hooks()
        finally:
            if finalize is not None:
                finalize(writer, sampler)
            sampler.budget.settle()
            sampler.flush()
            writer.set_meta(ended_at=time.time())
            writer.close()
    return sampler
