"""Sampler hook collecting leak snapshots and COW sites while a tree is recorded.

Per live process, on its own schedule:
- leak snapshot: with `site_growth` (`--trace-workers`) and a tracing agent in the process,
  the agent's traced growth by allocating line (kind "site"); otherwise, if the census is on,
  an out-of-process type census (kind "type"). Agent snapshots cost the *target* a
  tracemalloc snapshot (memory and time proportional to its traces), hence opt-in;
- COW sites (workers only, with an agent run directory): copied bytes by allocation site,
  taken once the worker's Private_Dirty moved by 1 MiB and 10% and then settled (less than
  256 KiB between two ticks; while it moves, the hook asks the sampler for a rollup every
  tick), or every `sites_interval` at most while it keeps moving, paced by its cost. Sites
  jobs never wait for leak snapshots: workers exit.

Each job kind (leak snapshots, COW sites) runs its jobs one at a time on its own background
thread (the sampler never waits for them), so neither kind starves the other: a leaking
worker's Private_Dirty keeps moving, which keeps its sites due, and leak snapshots must still
be taken. Results are written to the recording on the sampler's thread at the next tick. A
worker ready for its
COW sites while that thread is busy has its pages read at once by a capture thread (they need
the worker alive; its resolution needs only its parent and tracing origin, which is asked to
wait for it at its exit: agent "hold"). Each job's next run is
scheduled at max(min interval, its measured cost / budget), so the
hook stays within `budget` CPU seconds per second per job kind however large the heaps are.
Failures (process gone, no access, unsupported interpreter, agent unreachable) skip that
process for the tick and become notes naming it (memscope.notes). A COW-sites job asks the
worker's agent for its tracing origin first, then reads the worker's copied pages, then
resolves them through the *origin's* agent: a worker that exits during resolution keeps its
sites. close() waits for the job in flight and writes every result.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from memscope.cow import sites as sites_mod
from memscope.cow.copied_sites import copied_page_sample, heap_in_pages, parent_page_sample
from memscope.cow.cpython import Target, detect_target
from memscope.cow.sites import SiteBytes, heap_sites_stats, origin_pid
from memscope.inject.channel import AgentClient
from memscope.inject.errors import AgentError
from memscope.leaks.census import take_census
from memscope.leaks.store import write_cow_sites, write_leak_snapshot
from memscope.notes import NoteLog
from memscope.procfs import ProcessGone, ProcFS, ProcfsError
from memscope.recording import RecordingWriter
from memscope.sampler import Session, TickContext
from memscope.tree import Member

__all__ = ["LeakConfig", "LeakHook"]

# A worker's sites are re-scanned early when its Private_Dirty moved by this much since the
# last scan (copying happens in bursts: a worker that just iterated its inherited data).
DIRTY_STEP = 1 << 20
DIRTY_FRACTION = 0.1
MIN_GAP_S = 0.5
# A worker whose Private_Dirty moves less than this between ticks has settled (copies done).
SETTLE_STEP = 256 << 10
_MAX_ERRORS = 20  # error messages kept for the recording's meta (all of them are notes)


@dataclass(frozen=True)
class LeakConfig:
    run_dir: str | None = None  # agent run directory (run/attach --trace-sites)
    census: bool = True  # type census of processes (unless site_growth applies)
    site_growth: bool = False  # tracing agents report growing lines (--trace-workers)
    leak_interval: float = 1.0  # minimum seconds between leak snapshots of one process
    sites_interval: float = 2.0  # minimum seconds between COW site scans of one worker
    budget: float = 0.05  # CPU seconds per second, per job kind
    top: int = 50
    # A tracing origin about to exit waits (agent "hold", at most 60 s) while its workers'
    # pages are resolved: `run` only, where memscope owns the program; never on `attach`
    # (a production master's shutdown is not delayed).
    hold_exit: bool = False


@dataclass
class _Due:
    next_at: float = 0.0
    target: Target | None = None
    skip: bool = False
    last_at: float = float("-inf")
    pace: float = 0.0  # seconds the last job's cost asks before the next (cost / budget)
    dirty: int = -1  # private_dirty at the last job (sites: re-scan when it moves)
    prev: int | None = None  # private_dirty at the previous tick (sites: still copying?)


@dataclass
class _Result:
    record_id: int
    t: float
    kind: str  # "site" | "type" | "cow_sites"
    sizes: dict[str, int] = field(default_factory=dict)
    sites: list[SiteBytes] = field(default_factory=list)


@dataclass
class _Pages:
    """A worker's copied pages read for its sites (kept at `rate`: sample_pages)."""

    copied: npt.NDArray[np.uint64]
    pages: npt.NDArray[np.uint8]
    ok: npt.NDArray[np.bool_]
    rate: float
    read_s: float = 0.0  # wall time of the read (part of the worker's SITES_S)


class LeakHook:
    """The hook runs on the sampler's thread and never blocks it: jobs run one at a time on
    a background thread; their results are written to the recording by the next tick."""

    def __init__(self, config: LeakConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.errors: list[str] = []
        self.notes = NoteLog("sites")
        self._origins: dict[tuple[int, int], int] = {}
        self._parent_targets: dict[int, Target] = {}
        self.resolution: dict[int, dict[str, object]] = {}  # pid -> ResolutionStats or error
        self._leak: dict[tuple[int, int], _Due] = {}
        self._sites: dict[tuple[int, int], _Due] = {}
        self._done: queue.SimpleQueue[_Result] = queue.SimpleQueue()
        # Sites: workers ready (pages not read yet), and read by the capture thread.
        self._ready: queue.SimpleQueue[tuple[Member, float, _Due]] = queue.SimpleQueue()
        self._captured: queue.SimpleQueue[tuple[Member, float, _Due]] = queue.SimpleQueue()
        self._pages: dict[tuple[int, int], _Pages] = {}  # captured pages by member key
        # the COW hook's sample of each worker's copied pages (its latest quick scan): read
        # from the parent when the worker exits before its own pages are read
        self._fallback: dict[tuple[int, int], tuple[npt.NDArray[np.uint64], float]] = {}
        self._capturer: threading.Thread | None = None
        self._capturing = threading.Event()  # the capture thread is reading a worker's pages
        self._held: set[int] = set()  # tracing origins asked to wait for resolutions
        self._busy = {"leak": threading.Event(), "sites": threading.Event()}  # per job kind
        self._procfs: ProcFS | None = None

    def start(self, session: Session) -> None:
        self._procfs = session.procfs

    def __call__(self, ctx: TickContext) -> None:
        self.tick(ctx)

    def tick(self, ctx: TickContext) -> None:
        self._drain(ctx)
        live = [m for m in ctx.members if not m.exited and m.record_id >= 0]
        for m in live:
            if m.record_id in ctx.copied_pages:
                self._fallback[m.key] = ctx.copied_pages[m.record_id]
        # Every tick, even while a job runs: whether each worker is still copying is judged
        # tick to tick, so a worker that settled during a job is ready as soon as it ends.
        ready = [(m, d) for m, d in ((m, self._dirty(ctx, m)) for m in live)
                 if d is not None and self._sites_ready(m, d, ctx)]
        # A ready worker is queued at once. Its pages (the one step that needs it alive) are
        # read by the sites job if the job thread is free, else at once by the capture
        # thread, while the job resolves another worker (a resolution can take seconds: a
        # queued worker waiting for it once exited first, and got no sites).
        for m, dirty in ready:
            sdue = self._sites[m.key]
            sdue.dirty = dirty[0]  # not ready again until it moves again
            self._ready.put((m, ctx.t, sdue))
        self._procfs = ctx.procfs
        if self._busy["sites"].is_set():
            if not self._ready.empty() and (self._capturer is None
                                            or not self._capturer.is_alive()):
                self._capturer = threading.Thread(target=self._capture_queued, daemon=True,
                                                  name="memscope-sites-capture")
                self._capturer.start()
        else:
            for q in (self._captured, self._ready):
                try:
                    m, t, sdue = q.get_nowait()
                except queue.Empty:
                    continue
                self._start("sites", m, t, sdue)
                break
        # Not gated on ctx.budget: each job kind paces itself (next run after cost / budget),
        # and its CPU is charged to the whole-process budget, so rollups and scans yield.
        if not any(busy.is_set() for busy in self._busy.values()) and not (
                self._capturer is not None and self._capturer.is_alive()):
            self._forget_gone(live)  # (no job runs now: the job threads read these too)
        if self._busy["leak"].is_set():
            return
        due_leaks = [(d.next_at, i, m, d) for i, (m, d) in enumerate(
            (m, self._leak.setdefault(m.key, _Due())) for m in live)
            if not d.skip and self.clock() >= d.next_at]
        if due_leaks:  # the longest overdue first
            _, _, m, due = min(due_leaks, key=lambda x: (x[0], x[1]))
            self._start("leak", m, ctx.t, due)

    def _forget_gone(self, live: list[Member]) -> None:
        """Schedules and cached interpreters of processes that are gone (a PID's next
        process is a new key; its interpreter is detected again)."""
        keys, pids = {m.key for m in live}, {m.pid for m in live}
        for due in (self._leak, self._sites, self._fallback):
            for key in [k for k in due if k not in keys]:
                del due[key]
        for origin in [k for k in self._origins if k not in keys and k[0] not in pids]:
            del self._origins[origin]
        for pid in [p for p in self._parent_targets if p not in pids]:
            del self._parent_targets[pid]

    def _start(self, kind: str, m: Member, t: float, due: _Due) -> None:
        self._busy[kind].set()
        threading.Thread(target=self._run, args=(kind, m, t, due), daemon=True,
                         name=f"memscope-{kind}").start()

    @staticmethod
    def _dirty(ctx: TickContext, m: Member) -> tuple[int, int] | None:
        """How far the worker moved, and its Private_Dirty (latest rollup). The first is the
        COW feature's copied-bytes figure when larger: set every tick from its last scan (the
        COW scheduler quick-scans a worker as soon as its minor faults say it settled), while
        a loaded sampler refreshes a worker's rollup only every few ticks: following rollups
        alone, 2 of 4 workers copying 155 MiB were seen settled only after they exited."""
        rollup = ctx.latest.get(m.record_id)
        if rollup is None:
            return None
        copied = ctx.copied.get(m.record_id) or 0
        return max(rollup.private_dirty, copied), rollup.private_dirty

    def close(self, writer: RecordingWriter) -> None:
        """Wait for the running jobs (up to 60 s) and write what is pending."""
        deadline = time.monotonic() + 60.0
        for kind, busy in self._busy.items():
            while busy.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            if busy.is_set():
                self.notes.add(None, time.time(), f"a {kind} job was still running at the end")
        self._write_pending(writer)
        if self.errors:
            writer.set_meta(leak_hook_errors=self.errors[:_MAX_ERRORS])
        if self.resolution:  # per worker: its latest site resolution, or why it failed
            rows = [self.resolution[k] for k in sorted(self.resolution)]
            writer.set_meta(cow_sites_resolution=rows)

    def _error(self, pid: int, message: str) -> None:
        if len(self.errors) < _MAX_ERRORS:  # (the recording keeps these first ones)
            self.errors.append(message)
        self.notes.add(pid, time.time(), message)

    # -- scheduling ----------------------------------------------------------------------
    def _sites_ready(self, m: Member, moved_to: tuple[int, int], ctx: TickContext | None) -> bool:
        """Follow a worker's Private_Dirty; True when its COW sites are due (copying moved it
        and settled, or its next scan is due) and its agent listens. `moved_to`: (how far it
        moved, its Private_Dirty; see _dirty)."""
        level, dirty = moved_to
        if not self.config.run_dir or m.role != "worker":
            return False
        now = self.clock()
        sdue = self._sites.setdefault(m.key, _Due(next_at=float("inf")))
        if sdue.dirty < 0:
            sdue.dirty = level  # first sight: nothing copied worth a scan yet
        step = None if sdue.prev is None else abs(dirty - sdue.prev)
        sdue.prev = dirty
        if step is not None and step >= SETTLE_STEP and ctx is not None:
            ctx.want_rollup.add(m.key)  # copying: follow it tick by tick
        moved = abs(level - sdue.dirty) >= max(DIRTY_STEP, DIRTY_FRACTION * max(sdue.dirty, 0))
        settled = step is not None and step < SETTLE_STEP
        # A worker whose copying settled is scanned at once the first time, then no sooner
        # than its last job's cost allows: a leaking worker's Private_Dirty never stops
        # moving, and back-to-back resolutions through its agent starve its own threads.
        ready = moved and (
            (settled and now - sdue.last_at >= max(MIN_GAP_S, sdue.pace))
            or now >= sdue.next_at
        )
        sock = os.path.join(self.config.run_dir, f"agent-{m.pid}.sock")
        return not sdue.skip and ready and os.path.exists(sock)

    def _run(self, kind: str, m: Member, t: float, due: _Due) -> None:
        """A leak job, or the sites of `m` and of every worker captured meanwhile, on this
        kind's thread. A job's cost is wall time: it bounds this thread's CPU, and the time
        an agent spends serving the job, during which the target's tracing is paused
        (agent/runtime.py: allocations made meanwhile go untraced), so pacing by it keeps
        the untraced share of the target's time within the budget."""
        try:
            if kind == "leak":
                self._timed(due, self.config.leak_interval, kind, self._leak_job, m, t, due)
                return
            item: tuple[Member, float, _Due] | None = (m, t, due)
            while item is not None:
                m, t, due = item
                if m.key not in self._pages:  # not read by the capture thread: now
                    self._timed(due, self.config.sites_interval, kind, self._capture, m, t)
                pages = self._pages.pop(m.key, None)
                if pages is not None:
                    self._let_captures_finish()
                    self._hold(m, sites_mod.HOLD_S)  # renewed for each resolution
                    self._timed(due, self.config.sites_interval, kind, self._resolve_job, m,
                                t, pages)
                item = None
                for q in (self._captured, self._ready):
                    with contextlib.suppress(queue.Empty):
                        item = q.get_nowait()
                        break
            while self._held and self._captured.empty() and self._ready.empty():
                with contextlib.suppress(AgentError, OSError):  # nothing left to resolve
                    sites_mod.hold_origin(self.config.run_dir or "", self._held.pop(), 0.0)
        finally:
            self._busy[kind].clear()

    def _let_captures_finish(self, timeout: float = 10.0) -> None:
        """Wait while the capture thread reads a worker's pages: a parse on this thread would
        take memscope's GIL from it for seconds, and the worker may exit meanwhile (seen: a
        worker queued 0.6 s before its exit lost its pages to a parse)."""
        deadline = time.monotonic() + timeout
        while self._capturing.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)

    def _capture_queued(self) -> None:
        """Capture thread: read the pages of each queued worker, until none is queued."""
        while True:
            try:
                m, t, due = self._ready.get(timeout=0.5)
            except queue.Empty:
                return
            self._capturing.set()
            try:
                self._timed(due, self.config.sites_interval, "sites", self._capture, m, t)
            finally:
                self._capturing.clear()
            if m.key in self._pages:  # else it exited first (a note says so)
                self._captured.put((m, t, due))

    def _timed(self, due: _Due, interval: float, kind: str, job: Callable[..., None],
               m: Member, *args: object) -> None:
        """Run one job on `m`; its next run after max(interval, cost / budget)."""
        t0 = self.clock()
        try:
            job(m, *args)
        except Exception as exc:  # a job never takes the recording down
            self._error(m.pid, f"{kind} job failed: {type(exc).__name__}: {exc}")
            interval = self.config.leak_interval
        finally:
            due.last_at = self.clock()
            cost = due.last_at - t0
            due.pace = cost / max(self.config.budget, 1e-6)  # wall seconds to wait
            due.next_at = self.clock() + max(interval, due.pace)

    def _hold(self, m: Member, seconds: float) -> None:
        """Keep the worker's tracing origin reachable at its exit for `seconds` (best effort:
        an origin that cannot be asked gets the error at resolution)."""
        if not self.config.hold_exit:
            return
        try:
            origin = self._origin(m)
            sites_mod.hold_origin(self.config.run_dir or "", origin, seconds)
        except (AgentError, OSError):
            return
        self._held.add(origin)

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
                # the agent's own clock reading at its snapshot: under load the request may
                # wait well after the tick that asked for it, which would skew the rates
                at = ans.get("t")
                when = float(at) if isinstance(at, (int, float)) and abs(at - t) < 600 else t
                self._done.put(_Result(m.record_id, when, "site", sizes))
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
        except ProcessGone:
            pass  # it exited: nothing to snapshot
        except (AgentError, ProcfsError, OSError, ValueError, KeyError, TypeError) as exc:
            self._error(m.pid, f"leak snapshot failed: {exc}")

    def _origin(self, m: Member) -> int:
        """The process whose traces describe the worker's inherited heap: the parent's origin
        (asked of the parent's agent), or with --trace-workers the worker's own answer."""
        assert self.config.run_dir is not None
        if self.config.site_growth:
            origin = self._origins.get(m.key)
            if origin is None:
                origin = self._origins[m.key] = origin_pid(self.config.run_dir, m.pid)
            return origin
        key = (m.ppid, -1)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = origin_pid(self.config.run_dir, m.ppid)
        return origin

    def _target(self, m: Member) -> Target:
        """The interpreter of the worker's parent (the worker runs the same one)."""
        target = self._parent_targets.get(m.ppid)
        if target is None:
            target = self._parent_targets[m.ppid] = detect_target(m.ppid, self._procfs)
        return target

    def _capture(self, m: Member, t: float) -> None:
        """The worker's copied pages (at most PAGE_BUDGET, a coordinated sample beyond):
        the one step that needs the worker alive. Its tracing origin is asked first to wait
        at its exit for their resolution (agent "hold"), unless it already was (the origin's
        agent answers one request at a time: while it resolves another worker's blocks, a
        hold request waits, and so would the pages)."""
        with contextlib.suppress(AgentError, OSError):
            if self._origin(m) not in self._held:
                self._hold(m, sites_mod.HOLD_S)
        t0 = time.perf_counter()
        try:
            copied, pages, ok, rate = copied_page_sample(m.pid, m.ppid, self._procfs,
                                                         sites_mod.PAGE_BUDGET)
            read_s = time.perf_counter() - t0
        except ProcessGone:  # it exited before its pages were read
            fallback = self._fallback.get(m.key)
            if fallback is None:
                self.notes.add(m.pid, time.time(), "COW sites not read: the worker exited first")
                return
            copied, rate = fallback
            try:
                pages, ok = parent_page_sample(m.ppid, copied, self._procfs)
                read_s = time.perf_counter() - t0
            except (ProcfsError, OSError) as exc:
                self._resolution_failed(m, t, f"COW sites not read: the worker exited first,"
                                              f" and its parent's pages: {exc}")
                return
            self.notes.add(m.pid, time.time(), "COW sites from the parent's copy of the pages"
                           " the worker's last quick scan found copied (it exited before its"
                           " own were read)")
        except (ProcfsError, OSError, ValueError) as exc:
            self._resolution_failed(m, t, f"COW sites not read: {exc}")
            return
        self._pages[m.key] = _Pages(copied, pages, ok, rate, read_s)

    def _resolve_job(self, m: Member, t: float, cap: _Pages) -> None:
        run_dir = self.config.run_dir
        if run_dir is None:
            return
        try:  # from here on only the parent and the tracing origin must be alive
            origin = self._origin(m)
            t0 = time.perf_counter()
            heap = heap_in_pages(m.ppid, cap.copied, cap.pages, cap.ok, self._procfs,
                                 self._target(m))
            parse_s = time.perf_counter() - t0
        except (AgentError, ProcfsError, OSError, ValueError) as exc:
            self._resolution_failed(m, t, f"COW sites not resolved: {exc}")
            return
        try:  # needs the origin's agent only: the worker may exit meanwhile
            sites, stats = heap_sites_stats(
                run_dir, m.pid, heap, cap.copied, top=self.config.top, origin=origin,
                page_rate=cap.rate, seconds=sites_mod.resolve_seconds(cap.read_s + parse_s))
            stats.read_seconds, stats.parse_seconds = cap.read_s, parse_s
            self._done.put(_Result(m.record_id, t, "cow_sites", sites=sites))
            self.resolution[m.pid] = {"pid": m.pid, "t": t, **stats.as_dict()}
        except (AgentError, OSError, ValueError) as exc:
            self._resolution_failed(m, t, f"COW sites not resolved: {exc}")

    def _resolution_failed(self, m: Member, t: float, why: str) -> None:
        """A note for the report, and the error as this worker's resolution record unless an
        earlier resolution of it succeeded."""
        self._error(m.pid, why)
        if m.pid not in self.resolution or self.resolution[m.pid].get("error"):
            self.resolution[m.pid] = {"pid": m.pid, "t": t, "error": why}

    # -- writing (sampler thread) --------------------------------------------------------
    def _drain(self, ctx: TickContext) -> None:
        self._write_pending(ctx.writer)

    def _write_pending(self, writer: RecordingWriter) -> None:
        self.notes.drain(writer.conn)
        while True:
            try:
                r = self._done.get_nowait()
            except queue.Empty:
                return
            if r.kind == "cow_sites":
                write_cow_sites(writer, r.record_id, r.t, r.sites)
            else:
                write_leak_snapshot(writer, r.record_id, r.t, r.kind, r.sizes)
