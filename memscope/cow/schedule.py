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
  5% of one core) up to `burst` seconds, each scan spends its measured duration, and no scan
  starts while the bucket is empty. The burst lets the first scans of a short run happen at
  once; over a long run scans average at most `budget`.
- `interval=S`: every S seconds per worker (the user's choice, no budget);
- `interval=0`: disabled (on-demand requests still work).

A tick spends at most `tick_slice` seconds scanning; the rest wait for the next tick.
`request()` (e.g. from SIGUSR1, see `install_sigusr1`) scans every worker at the next tick.
"""

from __future__ import annotations

import signal
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
        raw = procfs.read(pid, "stat")
    except (ProcessGone, AccessDenied):
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return int(fields[7]) if len(fields) > 7 else None


def _default_scanner(pid: int, ppid: int, procfs: ProcFS) -> CowScan:
    return scan_process(pid, ppid, procfs)


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
        self.tokens = burst
        self.errors: dict[int, str] = {}  # pid -> why it cannot be scanned
        self.scans = 0
        self.scan_s = 0.0
        self._state: dict[tuple[int, int], _State] = {}
        self._last_tick: float | None = None
        self._requested = False

    def request(self) -> None:
        """Scan every worker at the next tick (safe to call from a signal handler)."""
        self._requested = True

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

    def __call__(self, ctx: TickContext) -> None:
        now = self.clock()
        if self._last_tick is not None:
            self.tokens = min(self.burst, self.tokens + self.budget * (now - self._last_tick))
        self._last_tick = now
        live = {m.pid: m for m in ctx.members if not m.exited and m.record_id >= 0}
        workers = [m for m in live.values() if m.ppid in live and m.pid not in self.errors]
        keys = {m.key for m in workers}
        for key in [k for k in self._state if k not in keys]:
            del self._state[key]
        requested, self._requested = self._requested, False

        faults = {m.pid: minor_faults(ctx.procfs, m.pid) for m in workers}
        due = [m for m in workers if requested or self._due(m, faults[m.pid], now)]
        started = time.perf_counter()
        for member in due:
            if not requested:
                if self.interval is None and self.tokens <= 0:
                    break
                if time.perf_counter() - started > self.tick_slice:
                    break
            self._scan(ctx, member, faults[member.pid])

    def _scan(self, ctx: TickContext, member: Member, minflt: int | None) -> None:
        t0 = time.perf_counter()
        try:
            scan = self.scanner(member.pid, member.ppid, ctx.procfs)
        except ProcessGone:
            return
        except AccessDenied as exc:
            self.errors[member.pid] = str(exc)
            return
        finally:
            cost = time.perf_counter() - t0
            self.tokens -= cost
            self.scan_s += cost
        state = self._state.setdefault(member.key, _State())
        state.last_t = self.clock()
        state.last_minflt = minflt or 0
        self.scans += 1
        write_scan(ctx.writer.conn, member.record_id, scan)


def install_sigusr1(scheduler: CowScheduler) -> Callable[[], None]:
    """Make SIGUSR1 request an on-demand scan; returns a function restoring the old handler."""

    def handler(signum: int, frame: FrameType | None) -> None:
        scheduler.request()

    old = signal.signal(signal.SIGUSR1, handler)

    def restore() -> None:
        signal.signal(signal.SIGUSR1, old)

    return restore
