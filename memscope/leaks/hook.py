"""Sampler hook collecting leak snapshots and COW sites while a tree is recorded.

Per live process, on its own schedule:
- leak snapshot: with `site_growth` (`--trace-workers`) and a tracing agent in the process,
  the agent's traced growth by allocating line (kind "site"); otherwise, if the census is on,
  an out-of-process type census (kind "type"). Agent snapshots cost the *target* a
  tracemalloc snapshot (memory and time proportional to its traces), hence opt-in;
- COW sites (workers only, with an agent run directory): copied bytes by allocation site;
  re-run early when the worker's Private_Dirty moves by 1 MiB and 10% (copies come in bursts).

Jobs run one at a time on a background thread (the sampler never waits for them); results
are written to the recording on the sampler's thread at the next tick. Each job's next run is
scheduled at max(min interval, its measured cost / budget), so the
hook stays within `budget` CPU seconds per second per job kind however large the heaps are.
Failures (process gone, no access, unsupported interpreter) skip that process for the tick.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from memscope.cow.cpython import Target, detect_target
from memscope.inject.channel import AgentClient
from memscope.inject.cow_sites import copied_heap
from memscope.inject.errors import AgentError
from memscope.inject.sites import SiteBytes, heap_sites_stats
from memscope.leaks.census import take_census
from memscope.leaks.store import write_cow_sites, write_leak_snapshot
from memscope.procfs import ProcFS, ProcfsError
from memscope.recording import RecordingWriter
from memscope.sampler import TickContext
from memscope.tree import Member

__all__ = ["LeakConfig", "LeakHook"]

# A worker's sites are re-scanned early when its Private_Dirty moved by this much since the
# last scan (copying happens in bursts: a worker that just iterated its inherited data).
DIRTY_STEP = 1 << 20
DIRTY_FRACTION = 0.1
MIN_GAP_S = 0.5


@dataclass(frozen=True)
class LeakConfig:
    run_dir: str | None = None  # agent run directory (run/attach --trace-sites)
    census: bool = True  # type census of processes (unless site_growth applies)
    site_growth: bool = False  # tracing agents report growing lines (--trace-workers)
    leak_interval: float = 1.0  # minimum seconds between leak snapshots of one process
    sites_interval: float = 2.0  # minimum seconds between COW site scans of one worker
    budget: float = 0.05  # CPU seconds per second, per job kind
    top: int = 50


@dataclass
class _Due:
    next_at: float = 0.0
    target: Target | None = None
    skip: bool = False
    last_at: float = float("-inf")
    dirty: int = -1  # private_dirty at the last job (sites: re-scan when it moves)


@dataclass
class _Result:
    record_id: int
    t: float
    kind: str  # "site" | "type" | "cow_sites"
    sizes: dict[str, int] = field(default_factory=dict)
    sites: list[SiteBytes] = field(default_factory=list)


class LeakHook:
    """The hook runs on the sampler's thread and never blocks it: jobs run one at a time on
    a background thread; their results are written to the recording by the next tick."""

    def __init__(self, config: LeakConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.errors: list[str] = []
        self.resolution: dict[int, dict[str, object]] = {}  # pid -> ResolutionStats or error
        self._leak: dict[tuple[int, int], _Due] = {}
        self._sites: dict[tuple[int, int], _Due] = {}
        self._done: queue.SimpleQueue[_Result] = queue.SimpleQueue()
        self._busy = threading.Event()
        self._procfs: ProcFS | None = None

    def __call__(self, ctx: TickContext) -> None:
        self._drain(ctx)
        if self._busy.is_set():
            return
        self._procfs = ctx.procfs
        for m in ctx.members:
            if m.exited or m.record_id < 0:
                continue
            rollup = ctx.latest.get(m.record_id)
            job = self._next_job(m, ctx.t, None if rollup is None else rollup.private_dirty)
            if job is not None:
                self._busy.set()
                threading.Thread(target=self._run, args=job, daemon=True,
                                 name="memscope-leaks").start()
                return

    def close(self, writer: RecordingWriter) -> None:
        """Wait for a running job (up to 30 s) and write what is pending."""
        deadline = time.monotonic() + 30.0
        while self._busy.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._write_pending(writer)
        if self.errors:
            writer.set_meta(leak_hook_errors=self.errors[:20])
        if self.resolution:  # per worker: its latest site resolution, or why it failed
            rows = [self.resolution[k] for k in sorted(self.resolution)]
            writer.set_meta(cow_sites_resolution=rows)

    # -- scheduling ----------------------------------------------------------------------
    def _next_job(self, m: Member, t: float, dirty: int | None) -> tuple[Any, ...] | None:
        now = self.clock()
        due = self._leak.setdefault(m.key, _Due())
        if not due.skip and now >= due.next_at:
            return ("leak", m, t, due)
        if self.config.run_dir and m.role == "worker":
            sdue = self._sites.setdefault(m.key, _Due())
            sock = os.path.join(self.config.run_dir, f"agent-{m.pid}.sock")
            moved = dirty is not None and abs(dirty - sdue.dirty) >= max(
                DIRTY_STEP, DIRTY_FRACTION * max(sdue.dirty, 0)
            )
            ready = now >= sdue.next_at or (moved and now - sdue.last_at >= MIN_GAP_S)
            if not sdue.skip and ready and os.path.exists(sock):
                if dirty is not None:
                    sdue.dirty = dirty
                return ("sites", m, t, sdue)
        return None

    def _run(self, kind: str, m: Member, t: float, due: _Due) -> None:
        t0 = self.clock()
        try:
            if kind == "leak":
                self._leak_job(m, t, due)
                interval = self.config.leak_interval
            else:
                self._sites_job(m, t)
                interval = self.config.sites_interval
        except Exception as exc:  # a job never takes the recording down
            self.errors.append(f"{kind} job for {m.pid}: {type(exc).__name__}: {exc}")
            interval = self.config.leak_interval
        finally:
            due.last_at = self.clock()
            cost = due.last_at - t0
            due.next_at = self.clock() + max(interval, cost / max(self.config.budget, 1e-6))
            self._busy.clear()

    # -- jobs (background thread) --------------------------------------------------------
    def _agent_tracing(self, pid: int) -> bool:
        run_dir = self.config.run_dir
        if not run_dir or not os.path.exists(os.path.join(run_dir, f"agent-{pid}.sock")):
            return False
        try:
            with AgentClient.for_pid(run_dir, pid, timeout=2.0) as c:
                tracing = c.request("ping").get("tracing")
        except AgentError:
            return False
        return isinstance(tracing, dict) and tracing.get("mode") == "tracing"

    def _leak_job(self, m: Member, t: float, due: _Due) -> None:
        procfs = self._procfs
        try:
            run_dir = self.config.run_dir
            if run_dir and self.config.site_growth and self._agent_tracing(m.pid):
                with AgentClient.for_pid(run_dir, m.pid, timeout=60.0) as c:
                    ans = c.request("growth", limit=self.config.top)
                sizes = {
                    f"{s['file']}:{s['line']}": int(s["size_diff"])
                    for s in ans.get("sites", [])
                    if isinstance(s, dict)
                }
                self._done.put(_Result(m.record_id, t, "site", sizes))
            elif self.config.census:
                if due.target is None:
                    due.target = detect_target(m.pid, procfs)
                if not due.target.supported:
                    due.skip = True
                    return
                census = take_census(m.pid, procfs, due.target)
                self._done.put(_Result(m.record_id, t, "type", census.bytes_by_type))
            else:
                due.skip = True
        except (AgentError, ProcfsError, OSError, ValueError, KeyError, TypeError) as exc:
            self.errors.append(f"leak snapshot of {m.pid}: {exc}")

    def _target(self, m: Member) -> Target:
        due = self._leak.setdefault(m.key, _Due())
        if due.target is None:
            due.target = detect_target(m.pid, self._procfs)
        return due.target

    def _sites_job(self, m: Member, t: float) -> None:
        run_dir = self.config.run_dir
        if run_dir is None:
            return
        try:
            heap, copied = copied_heap(m.pid, m.ppid, self._procfs, self._target(m))
            sites, stats = heap_sites_stats(run_dir, m.pid, heap, copied, top=self.config.top)
            self._done.put(_Result(m.record_id, t, "cow_sites", sites=sites))
            self.resolution[m.pid] = {"pid": m.pid, "t": t, **stats.as_dict()}
        except (AgentError, ProcfsError, OSError, ValueError) as exc:
            self.errors.append(f"COW sites of {m.pid}: {exc}")
            if m.pid not in self.resolution or self.resolution[m.pid].get("error"):
                self.resolution[m.pid] = {"pid": m.pid, "t": t, "error": str(exc)}

    # -- writing (sampler thread) --------------------------------------------------------
    def _drain(self, ctx: TickContext) -> None:
        self._write_pending(ctx.writer)

    def _write_pending(self, writer: RecordingWriter) -> None:
        while True:
            try:
                r = self._done.get_nowait()
            except queue.Empty:
                return
            if r.kind == "cow_sites":
                write_cow_sites(writer, r.record_id, r.t, r.sites)
            else:
                write_leak_snapshot(writer, r.record_id, r.t, r.kind, r.sizes)
