"""The sampling loop: every tick, discover the tree, read each process, stream rows to the file.

Cost model. statm is an O(1) counter read, so every process gets one every tick (rss and the
file/shmem part of it). smaps_rollup walks the page tables (about 0.7 ms per 100 MiB mapped),
so full rollups (pss, uss, swap, ...) are rationed by a CPU budget: a token bucket fills at
`budget` CPU-seconds per second and each rollup spends its measured cost. New processes get a
rollup at once; otherwise the stalest process goes first. While the budget is short (under
half its cap), a process whose statm did not move is not rolled up again within its quiet gap
(1 s, doubling each time a rollup finds nothing changed, up to max_staleness), so a large idle
tree does not spend the budget re-reading the same numbers; every process still gets a rollup
at least every max_staleness (10 s) and counters every tick.

When the work that is never deferred (the tick's fixed cost and those forced rollups) would
take more than BASE_SHARE of the budget (a tree of hundreds of processes), run() stretches
the interval and max_staleness by the same factor; the recording says so
(`sampler_stretched_to_s`).

CPU: one budget for the whole process (memscope.budget.CpuBudget). Each tick settles it with
the process's CPU since the previous tick (all threads: rollups, COW scans, leak jobs, SQLite
writes), then admits rollups against what is left. Hooks (memscope.features) see the same
budget in their TickContext and start optional work only while it is positive. The sampler's
own thread time is still recorded per tick (ticks.cpu_s) for diagnosis.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from memscope.budget import CpuBudget
from memscope.procfs import AccessDenied, ProcessGone, ProcessHandle, ProcFS, Rollup
from memscope.recording import RecordingWriter
from memscope.tree import Member, ProcessTree, python_version_of

if TYPE_CHECKING:  # (numpy is not imported to sample: start-up stays light)
    from memscope.cow.site_estimate import U64

__all__ = [
    "Hook",
    "Sampler",
    "Session",
    "TickContext",
    "exit_code_from_wait_status",
    "on_tick",
]

Clock = Callable[[], float]
#: the share of the CPU budget the work that is never deferred (a tick's fixed cost and
#: the rollups max_staleness forces) may take before run() stretches the ticks
BASE_SHARE = 0.75
BASE_WINDOW = 25  # ticks the fixed cost is judged over (5 s at 0.2 s)
#: a quiet process (statm still, within its quiet gap) is rolled up only while the budget
#: holds more than this share of its cap after the rollup
QUIET_RESERVE = 0.5
BASE_MIN_TICKS = 5


@dataclass(slots=True)
class TickContext:
    """What a per-tick hook sees: the live tree after this tick's samples were written."""

    t: float
    members: Sequence[Member]
    root: Member
    writer: RecordingWriter
    procfs: ProcFS
    latest: dict[int, Rollup]  # record_id -> latest full rollup
    budget: CpuBudget = field(default_factory=CpuBudget)  # the whole process's CPU budget
    #: record_id -> copied bytes (latest COW scan, or the estimate since when larger), set
    #: by the COW hook for the hooks after it (live view)
    copied: dict[int, int] = field(default_factory=dict)
    #: member keys a hook wants a full rollup of at the next tick, whatever the budget (e.g.
    #: a worker whose copying just settled: its USS has just changed for good)
    want_rollup: set[tuple[int, int]] = field(default_factory=set)
    #: record_id -> (a sample of the addresses of the pages it copied, the share of them
    #: kept), from the latest quick COW scan, set by the COW hook when a later hook wants
    #: them (the sites capture's fallback: memscope.leaks.hook)
    copied_pages: dict[int, tuple[U64, float]] = field(default_factory=dict)
    #: CPU seconds hooks spent this tick on work some event asked for (e.g. quick COW scans
    #: of new workers), apart from a tick's fixed cost (Sampler.base_cost)
    event_cpu: float = 0.0


@dataclass(slots=True)
class Session:
    """What a hook's start() gets: the recording being written and the tree being sampled."""

    writer: RecordingWriter
    procfs: ProcFS
    tree: ProcessTree
    budget: CpuBudget


class Hook(Protocol):
    """A feature's part of a recording session (see memscope.features)."""

    def start(self, session: Session) -> None: ...

    def tick(self, ctx: TickContext) -> None: ...

    def close(self, writer: RecordingWriter) -> None:
        """Persist everything finished or in flight; the writer closes right after."""


class _FunctionHook:
    def __init__(self, fn: Callable[[TickContext], None]) -> None:
        self.fn = fn

    def start(self, session: Session) -> None:
        pass

    def tick(self, ctx: TickContext) -> None:
        self.fn(ctx)

    def close(self, writer: RecordingWriter) -> None:
        pass


def on_tick(fn: Callable[[TickContext], None]) -> Hook:
    """A hook that only ticks (tests, benchmarks)."""
    return _FunctionHook(fn)


def exit_code_from_wait_status(status: int | None) -> int | None:
    """A zombie's raw wait status (stat field 52) as Popen does: code, or -signal."""
    if status is None:
        return None
    try:
        return os.waitstatus_to_exitcode(status)
    except ValueError:
        return None


@dataclass(slots=True)
class _State:
    last_rollup_t: float = float("-inf")
    rollup_cost: float = 0.0005  # seconds, refined by measurement (EWMA)
    rollups: int = 0
    counters: tuple[int, int] | None = None  # statm (resident, shared) at the last rollup
    #: how long a rollup is not worth the budget while statm stands still: doubles each
    #: time a rollup finds nothing changed (up to max_staleness), back to quiet_gap when
    #: something did
    quiet_for: float = 0.0
    cmdline: list[str] = field(default_factory=list)
    handle: ProcessHandle | None = None


class Sampler:
    def __init__(
        self,
        procfs: ProcFS,
        tree: ProcessTree,
        writer: RecordingWriter,
        *,
        budget: float | CpuBudget = 0.05,
        clock: Clock = time.time,
        cpu_clock: Clock = time.thread_time,
        hooks: Sequence[Hook] = (),
        flush_every: float = 0.5,
        max_staleness: float = 10.0,
        quiet_gap: float = 1.0,
    ) -> None:
        if not isinstance(budget, CpuBudget):
            if budget <= 0:
                raise ValueError("budget must be positive")
            budget = CpuBudget(budget, clock=clock)
        self.procfs = procfs
        self.tree = tree
        self.writer = writer
        self.budget = budget
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.hooks = list(hooks)
        self.flush_every = flush_every
        self.max_staleness = max_staleness
        self.quiet_gap = quiet_gap
        self.ticks = 0
        self.cpu_s = 0.0
        self.started_at = clock()
        self._last_flush = self.started_at
        self._last_tick_t: float | None = None
        self._state: dict[tuple[int, int], _State] = {}
        self._wanted: set[tuple[int, int]] = set()
        self.latest: dict[int, Rollup] = {}
        #: CPU seconds of the last ticks without their variable part (rollups and the hooks'
        #: event work: _variable_cpu), after the first: counters, discovery, writes, the
        #: hooks' per-tick work; their mean is a tick's fixed cost (base_cost)
        self._base: deque[float] = deque(maxlen=BASE_WINDOW)
        self._variable_cpu = 0.0
        self.stretch = 1.0  # factor on the interval and max_staleness (see run())
        self.stretched_to: float | None = None  # the longest interval run() stretched to

    # -- discovery -----------------------------------------------------------------------

    def _record_birth(self, member: Member, t: float) -> None:
        pid = member.pid
        handle: ProcessHandle | None = None
        cmdline: list[str] = []
        exe = None
        gone = member.exited and self.tree.members.get(pid) is not member
        if not gone:  # (one seen only in the kernel's events has nothing left to read)
            try:
                handle = self.procfs.open(pid)
                if handle.stat().start_ticks != member.start_ticks:
                    raise ProcessGone(pid, "PID reused")
                cmdline = handle.cmdline()
            except (ProcessGone, AccessDenied):
                if handle is not None:
                    handle.close()
                handle = None
            exe = self.procfs.exe(pid) if handle is not None else None
        cmdline = cmdline or member.cmdline or []
        parent = self.tree.members.get(member.ppid)
        parent_id = parent.record_id if parent is not None and member.parent_key else None
        if parent is not None and parent.key != member.parent_key:
            parent_id = None
        member.record_id = self.writer.add_process(
            pid=pid,
            start_ticks=member.start_ticks,
            ppid=member.ppid,
            parent_id=parent_id,
            role=member.role,
            cmdline=cmdline,
            exe=exe,
            python_version=python_version_of(self.procfs, pid, exe) if handle else None,
            started_at=member.started_at if member.started_at is not None else t,
        )
        pstate = self._state.get(member.parent_key) if member.parent_key else None
        if parent is not None and pstate is not None and pstate.handle is not None:
            with contextlib.suppress(ProcessGone, AccessDenied):
                self._check_exec(parent, pstate)  # has the parent exec'd since? (roles)
        self.tree.roles.add(member.key, member.parent_key, cmdline, exe,
                            member.started_at if member.started_at is not None else t,
                            execd=member.execd, record_id=member.record_id)
        if not gone:
            self._state[member.key] = _State(cmdline=cmdline, handle=handle)
        if member.exited:
            self._mark_exited(member, t)

    def _check_exec(self, member: Member, state: _State) -> None:
        """Raises ProcessGone/AccessDenied."""
        assert state.handle is not None
        cmdline = state.handle.cmdline()
        if cmdline and cmdline != state.cmdline:  # the process exec'd
            state.cmdline = cmdline
            exe = self.procfs.exe(member.pid)
            self.tree.roles.exec(member.key, cmdline, exe)
            self.writer.update_cmdline(member.record_id, cmdline, exe)
            self.writer.set_python_version(
                member.record_id, python_version_of(self.procfs, member.pid, exe)
            )

    def _revise_roles(self) -> None:
        """Roles from the fork structure (memscope.roles): revised as the tree evolves, the
        recording keeps each process's last one."""
        book = self.tree.roles
        for key in book.execs:
            node = book.nodes.get(key)
            if node is not None and node.record_id >= 0:
                self.writer.mark_execd(node.record_id)
        book.execs.clear()
        for key, role in book.decide().items():
            member = self.tree.members.get(key[0])
            if member is not None and member.key == key:
                member.role = role
            record_id = book.nodes[key].record_id
            if record_id >= 0:
                self.writer.set_role(record_id, role)
        book.forget_ended()  # their last roles are recorded: ended workers leave the book

    def _mark_exited(self, member: Member, t: float) -> None:
        code = exit_code_from_wait_status(member.exit_code) if member.exited else None
        at = member.exited_at if member.exited_at is not None else t
        self.tree.roles.end(member.key, at)
        self.writer.mark_exited(member.record_id, at, code)

    def _record_death(self, member: Member, t: float) -> None:
        if member.record_id >= 0:
            self._mark_exited(member, t)
        state = self._state.pop(member.key, None)
        if state is not None and state.handle is not None:
            state.handle.close()
        self.latest.pop(member.record_id, None)

    # -- reading ---------------------------------------------------------------------------

    def start_hooks(self) -> None:
        session = Session(self.writer, self.procfs, self.tree, self.budget)
        for hook in self.hooks:
            hook.start(session)

    def close_hooks(self) -> None:
        """Every hook persists its finished and in-flight work (in order; one failing hook
        does not keep the others from closing)."""
        errors: list[BaseException] = []
        for hook in self.hooks:
            try:
                hook.close(self.writer)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _rollup(self, member: Member, state: _State) -> Rollup | None:
        c0 = self.cpu_clock()
        if state.handle is None:
            return None
        try:
            rollup = state.handle.rollup()
            if state.rollups % 5 == 0:
                self._check_exec(member, state)
        except (ProcessGone, AccessDenied):
            return None
        cost = self.cpu_clock() - c0
        self._variable_cpu += cost
        state.rollup_cost = 0.7 * state.rollup_cost + 0.3 * cost
        state.rollups += 1
        return rollup

    def tick(self) -> TickContext:
        """Run one tick: discover, sample, write, run hooks."""
        c0 = self.cpu_clock()
        w0 = time.perf_counter()
        t = self.clock()
        self._last_tick_t = t
        self._variable_cpu = 0.0
        self.budget.settle()

        change = self.tree.refresh()
        for member in change.died:
            self._record_death(member, t)
        for member in change.born:
            self._record_birth(member, t)
        for member in change.exited:
            if member.record_id >= 0:
                self._mark_exited(member, t)
        if self.tree.roles.dirty:
            self._revise_roles()

        members = list(self.tree.members.values())
        born = {m.key for m in change.born}
        # Counters for everyone.
        rows: list[tuple[object, ...]] = []
        counters: dict[tuple[int, int], tuple[int, int]] = {}
        for member in list(members):
            state = self._state.get(member.key)
            if member.exited or state is None or state.handle is None:
                continue
            try:
                statm = state.handle.statm()
            except AccessDenied:
                continue
            except ProcessGone:  # exited, perhaps with its PID already reused
                self.tree.remove(member)
                self._record_death(member, t)
                members.remove(member)
                continue
            if statm.size == 0:  # zombie, or the kernel already tore the mm down
                for zombie in self.tree.check_zombies():
                    self._mark_exited(zombie, t)
                continue
            counters[member.key] = (statm.resident, statm.shared)

        # Full rollups, stalest first, while the budget lasts (new processes always).
        order = sorted(
            (m for m in members if m.key in counters),
            key=lambda m: (m.key not in born, self._state[m.key].last_rollup_t),
        )
        rollups = 0
        for member in order:
            state = self._state[member.key]
            overdue = t - state.last_rollup_t > self.max_staleness * self.stretch
            if member.key in born or overdue or member.key in self._wanted:
                self.budget.force(state.rollup_cost)
            elif (state.counters == counters[member.key]
                  and t - state.last_rollup_t < max(state.quiet_for, self.quiet_gap)
                  and self.budget.tokens - state.rollup_cost < self.budget.cap * QUIET_RESERVE):
                continue  # nothing statm can see moved since a recent rollup: not worth the
                # budget while it is short (a small tree's full bucket keeps every sample fresh)
            elif not self.budget.reserve(state.rollup_cost):
                continue
            rollup = self._rollup(member, state)
            if rollup is None:
                continue
            rollups += 1
            state.last_rollup_t = t
            unchanged = rollup == self.latest.get(member.record_id)
            state.quiet_for = (min(max(state.quiet_for, self.quiet_gap) * 2, self.max_staleness)
                               if unchanged else self.quiet_gap)
            self.latest[member.record_id] = rollup
            state.counters = counters.pop(member.key)
            shared = state.counters[1]  # statm's file + shmem pages (rss comes from the rollup)
            rows.append(
                (
                    member.record_id,
                    t,
                    rollup.rss,
                    rollup.pss,
                    rollup.uss,
                    rollup.shared_clean,
                    rollup.shared_dirty,
                    rollup.private_clean,
                    rollup.private_dirty,
                    rollup.swap,
                    rollup.swap_pss,
                    rollup.pss_anon,
                    rollup.pss_file,
                    rollup.pss_shmem,
                    rollup.anonymous,
                    shared,
                )
            )
        for member in members:
            if member.key in counters:
                resident, shared = counters[member.key]
                rows.append((member.record_id, t, resident, *([None] * 12), shared))
        self.writer.add_samples(rows)

        context = TickContext(t, members, self.tree.root, self.writer, self.procfs, self.latest,
                              self.budget)
        for hook in self.hooks:
            hook.tick(context)
        self._wanted = context.want_rollup
        self._variable_cpu += context.event_cpu

        cpu = self.cpu_clock() - c0
        if self.ticks:  # (the first tick also pays for the hooks' start and every birth)
            self._base.append(max(cpu - self._variable_cpu, 0.0))
        self.cpu_s += cpu
        self.ticks += 1
        self.writer.add_tick(t, time.perf_counter() - w0, cpu, len(members), rollups)
        if t - self._last_flush >= self.flush_every:
            self.flush()
        return context

    @property
    def base_cost(self) -> float:
        """A tick's fixed CPU cost: the mean of the last ticks' cost without rollups and
        the hooks' event work (flushes every few ticks included); 0 until there are a few
        ticks to judge by."""
        return sum(self._base) / len(self._base) if len(self._base) >= BASE_MIN_TICKS else 0.0

    def flush(self) -> None:
        self.writer.set_meta(
            sampler_ticks=self.ticks,
            sampler_cpu_s=round(self.cpu_s, 6),
            process_cpu_s=round(self.budget.spent, 6),
        )
        if self.stretched_to is not None:
            self.writer.set_meta(sampler_stretched_to_s=round(self.stretched_to, 3))
        self.writer.flush()
        self._last_flush = self.clock()

    def run(
        self,
        interval: float,
        should_stop: Callable[[], bool],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Tick every `interval` seconds (on a fixed schedule) until `should_stop()`.

        One budget: the work that is never deferred, a tick's fixed cost (base_cost) and the
        rollups max_staleness forces, must leave the budget room for the rest. When at
        `interval` it would take more than BASE_SHARE of the budget (a tree of many or large
        processes), both the interval and max_staleness are stretched by the same factor
        until it does not."""
        next_t = time.monotonic()
        while not should_stop():
            self.tick()
            if all(m.exited for m in self.tree.members.values()):
                break  # nothing left but zombies, or nothing at all
            forced = sum(self._state[m.key].rollup_cost for m in self.tree.members.values()
                         if not m.exited and m.key in self._state)
            demand = self.base_cost / interval + forced / self.max_staleness  # CPU-s per s
            self.stretch = max(1.0, demand / (self.budget.share * BASE_SHARE))
            step = interval * self.stretch
            if self.stretch > 1.05:
                self.stretched_to = max(step, self.stretched_to or 0.0)
            next_t += step
            delay = next_t - time.monotonic()
            if delay > 0:
                sleep(delay)
            else:
                next_t = time.monotonic()  # fell behind: don't try to catch up in a burst
        else:
            if self.tree.follower is not None:
                self.tick()  # births and exits the kernel announced since the last tick
