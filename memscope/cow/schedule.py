"""Scheduled, on-demand and final COW scans: the COW feature's hook.

`CowScheduler` scans the processes whose parent is also a live member (forked workers) and
writes each scan into the recording (memscope.cow.store). Between scans it keeps a per-tick
*estimate* of each worker's copied bytes from numbers the sampler already read: the copied
bytes of its last scan plus its Private_Dirty growth since that scan started (before any scan:
the growth since its first rollup). The estimate costs nothing, is recorded whenever it moves
(`cow_estimates`), and drives the schedule:

- `interval=None` (default, adaptive): a worker is scanned once when first seen (its
  baseline); after that only when its estimate moved by `growth` (1 MiB) since its last scan,
  and then as soon as its copying *settles* (Private_Dirty moved less than `settle_bytes`
  between two rollups `settle_s` apart), so the scan sees the final state instead of a
  mid-copy one. A worker seen for the first time or whose copying settled first gets a
  *quick* scan at once, on the sampler's thread (page classes from the two pagemaps only:
  milliseconds, so it has its copied bytes even if it exits before its turn for a full
  scan), then a full scan (types, causes) on the scan thread. A worker still copying fast
  is rescanned only every `copying_gap` seconds (the scan is marked `copying`). A worker
  whose memory did not move is never rescanned. Full scans start only while the
  whole-process CPU budget (ctx.budget) is positive, settled workers first, then
  never-scanned ones, stalest first;
- `interval=S`: every S seconds per worker (the user's choice, not budgeted);
- `interval=0`: no scheduled or final scans (SIGUSR1 requests still work).

Scans run one at a time on a background thread (`threaded=True`), so sampling goes on; results
are written by the sampler's thread at the next tick. `close(writer)` (end of the recording,
before the writer closes) waits for the scan in flight and writes it, then scans every worker
still alive whose estimate moved since its last scan, so no finished scan is lost and every
live worker ends with a current one. Failures become notes (memscope.notes) naming the worker.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from memscope.cow._model import CowScan
from memscope.cow.estimate import Estimates
from memscope.cow.scan import quick_scan, scan_process
from memscope.cow.site_estimate import U64, sample_pages
from memscope.cow.store import write_scan
from memscope.notes import NoteLog
from memscope.procfs import AccessDenied, ProcessGone, ProcFS
from memscope.recording import RecordingWriter
from memscope.sampler import Session, TickContext
from memscope.tree import Member

__all__ = ["CowScheduler", "install_sigusr1", "minor_faults"]

Scanner = Callable[[int, int, ProcFS], CowScan]


def _default_scanner(pid: int, ppid: int, procfs: ProcFS) -> CowScan:
    return scan_process(pid, ppid, procfs)


def _default_quick(pid: int, ppid: int, procfs: ProcFS) -> CowScan:
    return quick_scan(pid, ppid, procfs)


def minor_faults(procfs: ProcFS, pid: int) -> int | None:
    """Field 10 of /proc/PID/stat (minflt), or None when the process is gone."""
    try:
        return procfs.stat(pid).minflt
    except (ProcessGone, AccessDenied):
        return None


@dataclass
class _Job:
    key: tuple[int, int]
    pid: int
    ppid: int
    record_id: int
    procfs: ProcFS
    copying: bool
    scan: CowScan | None = None
    error: str | None = None
    gone: bool = False
    cpu: float = 0.0


def _run_job(job: _Job, scanner: Scanner) -> None:
    c0 = time.thread_time()
    try:
        job.scan = scanner(job.pid, job.ppid, job.procfs)
    except ProcessGone:
        job.gone = True
    except AccessDenied as exc:
        job.error = str(exc)
    except Exception as exc:  # a failed scan must not stop the others
        job.error = f"scan failed: {type(exc).__name__}: {exc}"
    finally:
        job.cpu = time.thread_time() - c0


class _ScanThread:
    """One daemon thread running scans one at a time, so the sampler keeps ticking."""

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="memscope-cow", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            _run_job(job, self.scanner)
            self.done.put(job)

    def close(self, timeout: float) -> None:
        self.jobs.put(None)
        self._thread.join(timeout)


class CowScheduler:
    def __init__(
        self,
        *,
        interval: float | None = None,
        growth: int = 1 << 20,
        min_gap: float = 0.25,
        copying_gap: float = 10.0,
        settle_bytes: int = 256 << 10,
        settle_s: float = 0.3,
        final_timeout: float = 30.0,
        tick_slice: float = 1.0,
        quick_slice: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        scanner: Scanner = _default_scanner,
        quick: Scanner | None = _default_quick,
        faults: Callable[[ProcFS, int], int | None] = minor_faults,
        threaded: bool = True,
        keep_pages: int = 0,
    ) -> None:
        if interval is not None and interval < 0:
            raise ValueError("COW scan interval must be >= 0")
        self.interval = interval
        self.growth = growth
        self.min_gap = min_gap
        self.copying_gap = copying_gap
        self.final_timeout = final_timeout
        self.tick_slice = tick_slice  # inline scans (threaded=False): time per tick
        self.quick_slice = quick_slice  # quick scans (sampler's thread): time per tick
        self.clock = clock
        self.scanner = scanner
        self.quick = quick
        self.faults = faults
        self.threaded = threaded
        # > 0: keep a sample of about this many of each worker's copied page addresses from
        # its latest quick scan, handed to the hooks after this one (ctx.copied_pages)
        self.keep_pages = keep_pages
        self.pages: dict[tuple[int, int], tuple[U64, float]] = {}
        self.estimates = Estimates(settle_bytes=settle_bytes, settle_s=settle_s)
        self.notes = NoteLog("cow")
        self.errors: dict[int, str] = {}  # pid -> why it cannot be scanned
        self.scans = 0
        self.scan_s = 0.0  # CPU seconds spent scanning
        self.copied: dict[tuple[int, int], int] = {}  # member key -> latest scan's copied bytes
        self._last_t: dict[tuple[int, int], float] = {}  # clock() of the last scan started
        self._inflight: dict[tuple[int, int], _Job] = {}
        self._want_full: set[tuple[int, int]] = set()  # quick-scanned, full scan to follow
        self._quicked: set[tuple[int, int]] = set()  # had a quick scan at first sight
        self._thread: _ScanThread | None = None
        self._requested = False
        # workers whose scan was in flight when a scan was requested: that scan may have
        # started before the request, so each is owed one more, started after it
        self._owed: set[tuple[int, int]] = set()
        self._session: Session | None = None
        self._restore: Callable[[], None] | None = None

    # -- the hook ---------------------------------------------------------------------
    def start(self, session: Session) -> None:
        self._session = session
        if threading.current_thread() is threading.main_thread():
            self._restore = install_sigusr1(self)

    def request(self) -> None:
        """Scan every worker at the next tick (safe to call from a signal handler)."""
        self._requested = True

    def __call__(self, ctx: TickContext) -> None:
        self.tick(ctx)

    def tick(self, ctx: TickContext) -> None:
        now = self.clock()
        self._collect(ctx.writer)
        live = {m.pid: m for m in ctx.members if not m.exited and m.record_id >= 0}
        workers = [m for m in live.values() if m.ppid in live and m.pid not in self.errors]
        if self.interval != 0 or self._requested:
            self.estimates.update(ctx.t, workers, ctx.latest)
            self.estimates.write(ctx.writer.conn)
        if self.interval is None:  # adaptive: follow each worker's minor faults (O(1) each)
            for m in workers:
                minflt = self.faults(ctx.procfs, m.pid)
                if minflt is not None:
                    self.estimates.faults(m, ctx.t, minflt)
        for m in workers:
            est = self.estimates.copied(m.key, self.copied.get(m.key))
            if est is not None:
                ctx.copied[m.record_id] = est
            if m.key in self.pages:
                ctx.copied_pages[m.record_id] = self.pages[m.key]
        keys = {m.key for m in workers}
        kept = (self._last_t.keys() | self.copied.keys() | self._want_full | self._quicked
                | self.pages.keys())
        for key in [k for k in kept if k not in keys and k not in self._inflight]:
            self._last_t.pop(key, None)  # a worker gone: nothing of it is kept
            self.copied.pop(key, None)
            self.pages.pop(key, None)
            self._want_full.discard(key)
            self._quicked.discard(key)
            self._owed.discard(key)
            self.estimates.forget(key)
        live_pids = {m.pid for m in ctx.members if not m.exited}
        for pid in [p for p in self.errors if p not in live_pids]:
            del self.errors[pid]  # a recycled PID is a new process: it may be scanned
        requested, self._requested = self._requested, False
        if requested:
            self._owed |= {m.key for m in workers if m.key in self._inflight}
        if self.interval != 0 and self.quick is not None and not requested:
            # First sight, or copying settled: a quick scan now (even while its full scan
            # runs: that one may have started before the copying). They run on the sampler's
            # thread: at most `quick_slice` seconds of them per tick (at least one), settled
            # workers first, the rest at the next ticks. (All in one tick stalled sampling
            # for 6.5 s on a loaded machine: 4 workers forked at once, 1.5-2 s per quick scan
            # while a full scan held the GIL; every hook, sites included, waited.)
            quick_t0 = time.perf_counter()
            todo = []
            for m in workers:
                first = m.key not in self._quicked
                settled = (self.interval is None and self.estimates.moved(m.key) >= self.growth
                           and not self.estimates.copying(m.key))
                if first or settled:
                    todo.append((not settled, m, settled))
            for _, m, settled in sorted(todo, key=lambda x: x[0]):
                if time.perf_counter() - quick_t0 > self.quick_slice:
                    break
                self._quicked.add(m.key)
                self._quick(ctx, m)
                if settled:
                    ctx.want_rollup.add(m.key)  # its USS just changed for good
        due = [(rank, m) for m in workers if m.key not in self._inflight
               and (rank := self._due(m, now, requested or m.key in self._owed)) is not None]
        due.sort(key=lambda rm: (rm[0], self._last_t.get(rm[1].key, float("-inf"))))
        started = time.perf_counter()
        for _, member in due:
            asked = requested or member.key in self._owed
            budgeted = self.interval is None and not asked
            if budgeted and (self._inflight or not ctx.budget.positive):
                break  # one scan at a time; the next when the budget allows
            if not asked and time.perf_counter() - started > self.tick_slice:
                break
            self._submit(ctx, member, now)
            if self.threaded and not asked:
                break

    def _due(self, m: Member, now: float, requested: bool) -> int | None:
        """None if not due, else a rank (0 first): 0 settled after copying, 1 baseline,
        2 fixed interval or on demand, 3 still copying but overdue."""
        if requested:
            return 2
        last = self._last_t.get(m.key)
        if self.interval is not None:
            due = self.interval > 0 and (last is None or now - last >= self.interval)
            return 2 if due else None
        if last is None:
            return 1
        if m.key in self._want_full:
            return 0
        gap = now - last
        if gap < self.min_gap or self.estimates.moved(m.key) < self.growth:
            return None
        if not self.estimates.copying(m.key):
            return 0
        return 3 if gap >= self.copying_gap else None

    def _quick(self, ctx: TickContext, member: Member) -> None:
        """A page-level scan now (a few ms), written at once; the full scan follows."""
        assert self.quick is not None
        job = _Job(member.key, member.pid, member.ppid, member.record_id, ctx.procfs,
                   copying=False)
        self.estimates.mark_scan(member.key)
        _run_job(job, self.quick)
        ctx.event_cpu += job.cpu
        self._finish(ctx.writer, job, full=False)
        if job.scan is not None:
            self._want_full.add(member.key)

    def _submit(self, ctx: TickContext, member: Member, now: float) -> None:
        self._want_full.discard(member.key)
        self._owed.discard(member.key)
        job = _Job(member.key, member.pid, member.ppid, member.record_id, ctx.procfs,
                   copying=self.estimates.copying(member.key))
        self._last_t[member.key] = now
        self.estimates.mark_scan(member.key)
        if self.threaded:
            if self._thread is None:
                self._thread = _ScanThread(self.scanner)
            self._inflight[job.key] = job
            self._thread.jobs.put(job)
        else:
            _run_job(job, self.scanner)
            ctx.event_cpu += job.cpu
            self._finish(ctx.writer, job)

    def _collect(self, writer: RecordingWriter) -> None:
        if self._thread is not None:
            while not self._thread.done.empty():
                self._finish(writer, self._thread.done.get())
        self.notes.drain(writer.conn)

    def _finish(self, writer: RecordingWriter, job: _Job, full: bool = True) -> None:
        if full:
            self._inflight.pop(job.key, None)
        self.scan_s += job.cpu
        self.estimates.scanned(job.key, None if job.scan is None else job.scan.copied_bytes)
        t = time.time()
        if job.error is not None:
            self.errors[job.pid] = job.error
            self.notes.add(job.pid, t, f"COW scans stopped: {job.error}")
            return
        if job.scan is None:
            if job.gone and full:
                what = ("no types: exited during its full COW scan (copied bytes from its quick"
                        " scan)" if job.key in self.copied else "exited during its COW scan")
                self.notes.add(job.pid, t, what)
            return
        job.scan.copying = job.copying
        if job.scan.copied_pages is not None:
            if self.keep_pages > 0:
                self.pages[job.key] = sample_pages(job.scan.copied_pages, self.keep_pages)
            job.scan.copied_pages = None  # (all of them: not kept beyond the sample)
        self.scans += 1
        self.copied[job.key] = job.scan.copied_bytes
        write_scan(writer.conn, job.record_id, job.scan, job.copying)
        writer.set_meta(cow_scan_cpu_s=round(self.scan_s, 4), cow_scans=self.scans)

    # -- the end of the recording --------------------------------------------------------
    def close(self, writer: RecordingWriter) -> None:
        """Write the scan in flight, then a final scan of each live worker that moved."""
        if self._restore is not None:
            self._restore()
            self._restore = None
        deadline = time.monotonic() + self.final_timeout
        if self._thread is not None:
            while self._inflight and time.monotonic() < deadline:
                try:
                    self._finish(writer, self._thread.done.get(timeout=0.05))
                except queue.Empty:
                    continue
            for job in list(self._inflight.values()):
                self.notes.add(job.pid, time.time(), "COW scan still running when the"
                               " recording ended (not written)")
            self._thread.close(1.0)
            self._thread = None
        if self._session is not None and self.interval != 0:
            self._final_scans(writer, self._session, deadline)
        self.estimates.write(writer.conn)
        self.notes.drain(writer.conn)

    def _final_scans(self, writer: RecordingWriter, session: Session, deadline: float) -> None:
        """Every live worker that moved since its last scan or still lacks a full one: a
        quick scan first of those whose copied bytes are not current (milliseconds each),
        then full scans while `final_timeout` lasts."""
        members = [m for m in session.tree.members.values()
                   if not m.exited and m.record_id >= 0]
        live = {m.pid for m in members}
        todo = [m for m in members
                if m.ppid in live and m.pid not in self.errors and session.procfs.exists(m.pid)
                and (m.key not in self.copied or m.key in self._want_full
                     or self.estimates.moved(m.key) >= self.growth)]
        scanners = [s for s in (self.quick, self.scanner) if s is not None]
        for i, scanner in enumerate(scanners):
            full = i == len(scanners) - 1
            for m in todo:
                if not full and m.key in self.copied and self.estimates.moved(m.key) < self.growth:
                    continue  # its quick scan's copied bytes still hold: only types are owed
                if time.monotonic() > deadline:
                    self.notes.add(m.pid, time.time(), "no final full COW scan (time limit at"
                                   " the end of the recording)" if i else "no final COW scan")
                    continue
                job = _Job(m.key, m.pid, m.ppid, m.record_id, session.procfs,
                           copying=self.estimates.copying(m.key))
                self.estimates.mark_scan(m.key)
                _run_job(job, scanner)
                self._finish(writer, job, full=full)


def install_sigusr1(scheduler: CowScheduler) -> Callable[[], None]:
    """Make SIGUSR1 request an on-demand scan; returns a function restoring the old handler."""

    def handler(signum: int, frame: FrameType | None) -> None:
        scheduler.request()

    old = signal.signal(signal.SIGUSR1, handler)

    def restore() -> None:
        signal.signal(signal.SIGUSR1, old)

    return restore
