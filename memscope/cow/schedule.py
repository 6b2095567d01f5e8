"""Scheduled and on-demand COW scans, as a sampler tick hook.

`CowScheduler` is a `TickHook`: called every sampler tick with the live tree, it scans the
processes whose parent is also a live member (forked workers) and writes each scan into the
recording (memscope.cow.store). When to scan:

- `interval=None` (default, adaptive): a worker is scanned once when first seen (its
  baseline), then whenever it took `growth / 4096` minor page faults (1 MiB worth) since its
  last scan, and at least every `max_gap` seconds, never more often than every `min_gap`
  seconds. A copy-on-write break is a minor fault, as is the first touch of new memory, so
  the fault counter (/proc/PID/stat, O(1)) says when pages may have been copied; RSS cannot
  (a copied page replaces a shared one) and USS needs a page-table walk.
  Scans spend a CPU budget: a token bucket fills at `budget` CPU-seconds per second (default
  5% of one core) up to `burst` seconds, each scan spends its measured CPU time, and no scan
  starts while the bucket is empty. That CPU is reported in `TickContext.own_budget_cpu`, so
  the sampler does not also charge it to its rollup budget. The burst lets the first scans
  of a short run happen at once; over a long run scans average at most `budget`.
- `interval=S`: every S seconds per worker (the user's choice, no budget);
- `interval=0`: disabled (on-demand requests still work).

Scans run one at a time on a background thread (`threaded=True`, the default), so sampling
goes on during a scan; its results are written to the recording by the sampler's thread at
the next tick. A scan still running when the recording ends is abandoned. With
`threaded=False` (tests) scans run inline, at most `tick_slice` seconds per tick.
`request()` (e.g. from SIGUSR1, see `install_sigusr1`) scans every worker at the next tick.
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
from memscope.cow.scan import scan_process
from memscope.cow.store import write_scan
from memscope.procfs import AccessDenied, ProcessGone, ProcFS
from memscope.sampler import TickContext
from memscope.tree import Member

__all__ = ["CowScheduler", "install_sigusr1", "minor_faults"]

Scanner = Callable[[int, int, ProcFS], CowScan]


@dataclass
class _State:
    last_t: float | None = None  # clock() of the last scan
    last_minflt: int = 0  # minor faults counted at the last scan


def minor_faults(procfs: ProcFS, pid: int) -> int | None:
    """Field 10 of /proc/PID/stat (minflt), or None when the process is gone."""
    try:
        return procfs.stat(pid).minflt
    except (ProcessGone, AccessDenied):
        return None


def _default_scanner(pid: int, ppid: int, procfs: ProcFS) -> CowScan:
    return scan_process(pid, ppid, procfs)


@dataclass
class _Job:
    key: tuple[int, int]
    pid: int
    ppid: int
    record_id: int
    minflt: int | None
    procfs: ProcFS
    scan: CowScan | None = None
    error: str | None = None
    cpu: float = 0.0


def _run_job(job: _Job, scanner: Scanner) -> None:
    c0 = time.thread_time()
    try:
        job.scan = scanner(job.pid, job.ppid, job.procfs)
    except ProcessGone:
        pass
    except AccessDenied as exc:
        job.error = str(exc)
    finally:
        job.cpu = time.thread_time() - c0


class _ScanThread:
    """One daemon thread running scans one at a time, so the sampler keeps ticking.

    Its CPU clock is read from the sampler's thread each tick (`cpu_delta`), so a long scan
    is charged to the COW budget tick by tick instead of starving the sampler's rollups.
    """

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="memscope-cow", daemon=True)
        self._ready = threading.Event()
        self._clock_id = 0
        self._cpu_seen = 0.0
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        self._clock_id = time.pthread_getcpuclockid(threading.get_ident())
        self._ready.set()
        while (job := self.jobs.get()) is not None:
            try:
                _run_job(job, self.scanner)
            except Exception as exc:  # a failed scan must not stop the others
                job.error = f"scan failed: {type(exc).__name__}: {exc}"
            self.done.put(job)

    def cpu_delta(self) -> float:
        try:
            now = time.clock_gettime(self._clock_id)
        except OSError:  # the thread ended
            return 0.0
        delta, self._cpu_seen = now - self._cpu_seen, now
        return delta

    def close(self, timeout: float) -> None:
        self.jobs.put(None)
        self._thread.join(timeout)


class CowScheduler:
    def __init__(
        self,
        *,
        interval: float | None = None,
        budget: float = 0.05,
        burst: float = 2.0,
        growth: int = 1 << 20,
        min_gap: float = 0.25,
        max_gap: float = 60.0,
        tick_slice: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        scanner: Scanner = _default_scanner,
        threaded: bool = True,
    ) -> None:
        if interval is not None and interval < 0:
            raise ValueError("COW scan interval must be >= 0")
        if not 0 < budget <= 1:
            raise ValueError("COW scan budget must be in (0, 1]")
        self.interval = interval
        self.budget = budget
        self.burst = burst
        self.growth = growth
        self.min_gap = min_gap
        self.max_gap = max_gap
        self.tick_slice = tick_slice
        self.clock = clock
        self.scanner = scanner
        self.threaded = threaded
        self.tokens = burst
        self.errors: dict[int, str] = {}  # pid -> why it cannot be scanned
        self.scans = 0
        self.scan_s = 0.0  # CPU seconds spent scanning
        self.copied: dict[tuple[int, int], int] = {}  # member key -> latest copied bytes
        self._state: dict[tuple[int, int], _State] = {}
        self._inflight: set[tuple[int, int]] = set()
        self._thread: _ScanThread | None = None
        self._last_tick: float | None = None
        self._requested = False

    def request(self) -> None:
        """Scan every worker at the next tick (safe to call from a signal handler)."""
        self._requested = True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the scan thread (a scan still running is abandoned after `timeout`)."""
        if self._thread is not None:
            self._thread.close(timeout)
            self._thread = None

    def _due(self, member: Member, minflt: int | None, now: float) -> bool:
        state = self._state.setdefault(member.key, _State())
        if state.last_t is None:
            return self.interval != 0
        gap = now - state.last_t
        if self.interval is not None:
            return self.interval > 0 and gap >= self.interval
        if gap < self.min_gap:
            return False
        faults = 0 if minflt is None else minflt - state.last_minflt
        moved = faults * 4096 >= self.growth
        return moved or gap >= self.max_gap

    def _charge(self, ctx: TickContext, cpu: float) -> None:
        """CPU spent scanning: from this budget, and reported so the sampler does not also
        charge it to its rollup budget."""
        self.tokens -= cpu
        self.scan_s += cpu
        ctx.own_budget_cpu += cpu
        if cpu > 0:
            ctx.writer.set_meta(cow_scan_cpu_s=round(self.scan_s, 4))

    def __call__(self, ctx: TickContext) -> None:
        now = self.clock()
        if self._last_tick is not None:
            self.tokens = min(self.burst, self.tokens + self.budget * (now - self._last_tick))
        self._last_tick = now
        if self._thread is not None:
            self._charge(ctx, self._thread.cpu_delta())
            while not self._thread.done.empty():
                self._finish(ctx, self._thread.done.get())
        live = {m.pid: m for m in ctx.members if not m.exited and m.record_id >= 0}
        workers = [m for m in live.values() if m.ppid in live and m.pid not in self.errors]
        keys = {m.key for m in workers}
        for key in [k for k in self._state if k not in keys and k not in self._inflight]:
            del self._state[key]
            self.copied.pop(key, None)
        requested, self._requested = self._requested, False

        faults = {m.pid: minor_faults(ctx.procfs, m.pid) for m in workers}
        due = [
            m for m in workers
            if m.key not in self._inflight and (requested or self._due(m, faults[m.pid], now))
        ]
        # Stalest first (never scanned before all), so with one scan at a time no worker
        # waits behind siblings that keep coming due again.
        due.sort(key=lambda m: self._last_scan(m.key))
        started = time.perf_counter()
        for member in due:
            if not requested:
                if self.interval is None and self.tokens <= 0:
                    break
                if self._inflight or time.perf_counter() - started > self.tick_slice:
                    break  # threaded: one scan at a time; inline: bounded time per tick
            job = _Job(member.key, member.pid, member.ppid, member.record_id,
                       faults[member.pid], ctx.procfs)
            if self.threaded:
                if self._thread is None:
                    self._thread = _ScanThread(self.scanner)
                self._inflight.add(job.key)
                self._thread.jobs.put(job)
            else:
                _run_job(job, self.scanner)
                self._charge(ctx, job.cpu)
                self._finish(ctx, job)

    def _last_scan(self, key: tuple[int, int]) -> float:
        state = self._state.get(key)
        return float("-inf") if state is None or state.last_t is None else state.last_t

    def _finish(self, ctx: TickContext, job: _Job) -> None:
        self._inflight.discard(job.key)
        if job.error is not None:
            self.errors[job.pid] = job.error
            ctx.writer.set_meta(cow_errors={str(p): e for p, e in self.errors.items()})
            return
        if job.scan is None:  # the process went away
            return
        state = self._state.setdefault(job.key, _State())
        state.last_t = self.clock()
        state.last_minflt = job.minflt or 0
        self.scans += 1
        self.copied[job.key] = job.scan.copied_bytes
        write_scan(ctx.writer.conn, job.record_id, job.scan)


def install_sigusr1(scheduler: CowScheduler) -> Callable[[], None]:
    """Make SIGUSR1 request an on-demand scan; returns a function restoring the old handler."""

    def handler(signum: int, frame: FrameType | None) -> None:
        scheduler.request()

    old = signal.signal(signal.SIGUSR1, handler)

    def restore() -> None:
        signal.signal(signal.SIGUSR1, old)

    return restore
