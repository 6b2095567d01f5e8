"""Sampler hook collecting leak snapshots and COW sites while a tree is recorded.

Per live process, on its own schedule:
- leak snapshot: if the process's agent is tracing (the root under `--trace-sites`, or every
  process under `--trace-workers`), the agent's traced growth by allocating line (kind "site");
  otherwise, if the census is on, an out-of-process type census (kind "type");
- COW sites (workers only, with an agent run directory): copied bytes by allocation site.

Each job's next run is scheduled at max(min interval, its measured cost / budget), so the
hook stays within `budget` CPU seconds per second per job kind however large the heaps are.
Failures (process gone, no access, unsupported interpreter) skip that process for the tick.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from memscope.cow.cpython import Target, detect_target
from memscope.inject.channel import AgentClient
from memscope.inject.cow_sites import copied_heap
from memscope.inject.errors import AgentError
from memscope.inject.sites import heap_sites
from memscope.leaks.census import take_census
from memscope.leaks.store import write_cow_sites, write_leak_snapshot
from memscope.procfs import ProcfsError
from memscope.sampler import TickContext
from memscope.tree import Member

__all__ = ["LeakConfig", "LeakHook"]


@dataclass(frozen=True)
class LeakConfig:
    run_dir: str | None = None  # agent run directory (run/attach --trace-sites)
    census: bool = True  # type census of processes without a tracing agent
    leak_interval: float = 1.0  # minimum seconds between leak snapshots of one process
    sites_interval: float = 2.0  # minimum seconds between COW site scans of one worker
    budget: float = 0.05  # CPU seconds per second, per job kind
    top: int = 50


@dataclass
class _Due:
    next_at: float = 0.0
    target: Target | None = None
    skip: bool = False


@dataclass
class LeakHook:
    config: LeakConfig
    clock: Callable[[], float] = time.perf_counter
    _leak: dict[tuple[int, int], _Due] = field(default_factory=dict)
    _sites: dict[tuple[int, int], _Due] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __call__(self, ctx: TickContext) -> None:
        for m in ctx.members:
            if m.exited or m.record_id < 0:
                continue
            self._leak_job(ctx, m)
            if self.config.run_dir and m.role == "worker":
                self._sites_job(ctx, m)

    def _schedule(self, due: _Due, cost: float, interval: float) -> None:
        due.next_at = self.clock() + max(interval, cost / max(self.config.budget, 1e-6))

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

    def _leak_job(self, ctx: TickContext, m: Member) -> None:
        due = self._leak.setdefault(m.key, _Due())
        if due.skip or self.clock() < due.next_at:
            return
        t0 = self.clock()
        try:
            if self.config.run_dir and self._agent_tracing(m.pid):
                with AgentClient.for_pid(self.config.run_dir, m.pid, timeout=30.0) as c:
                    ans = c.request("growth", limit=self.config.top)
                sizes = {
                    f"{s['file']}:{s['line']}": int(s["size_diff"])
                    for s in ans.get("sites", [])
                    if isinstance(s, dict)
                }
                write_leak_snapshot(ctx.writer, m.record_id, ctx.t, "site", sizes)
            elif self.config.census:
                if due.target is None:
                    due.target = detect_target(m.pid, ctx.procfs)
                    if not due.target.supported:
                        due.skip = True
                        return
                census = take_census(m.pid, ctx.procfs, due.target)
                write_leak_snapshot(ctx.writer, m.record_id, ctx.t, "type", census.bytes_by_type)
        except (AgentError, ProcfsError, OSError, ValueError, KeyError, TypeError) as exc:
            self.errors.append(f"leak snapshot of {m.pid}: {exc}")
        self._schedule(due, self.clock() - t0, self.config.leak_interval)

    def _sites_job(self, ctx: TickContext, m: Member) -> None:
        run_dir = self.config.run_dir
        due = self._sites.setdefault(m.key, _Due())
        if run_dir is None or due.skip or self.clock() < due.next_at:
            return
        if not os.path.exists(os.path.join(run_dir, f"agent-{m.pid}.sock")):
            return  # not a Python process with the agent (or not started yet)
        t0 = self.clock()
        try:
            heap, copied = copied_heap(m.pid, m.ppid, ctx.procfs)
            sites = heap_sites(run_dir, m.pid, heap, copied, top=self.config.top)
            write_cow_sites(ctx.writer, m.record_id, ctx.t, sites)
        except (AgentError, ProcfsError, OSError, ValueError) as exc:
            self.errors.append(f"COW sites of {m.pid}: {exc}")
        self._schedule(due, self.clock() - t0, self.config.sites_interval)
