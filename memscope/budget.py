"""One CPU budget for the whole memscope process: every thread, user + system time.

The sampler's rollups, COW scans, the leak/sites jobs and the SQLite writes all draw on one
token bucket. Once per tick the sampler calls `settle()`: the bucket fills by HEADROOM x
`share` x the elapsed wall time, and is charged the CPU the *process* really used since the
last settle
(`time.process_time`: all threads, user + sys). Work is admitted against the bucket:

- a rollup runs only if its expected cost is in the bucket (`reserve`; the reservation is
  replaced by the measured cost at the next settle, so nothing is charged twice);
- a COW scan or a background job starts only while the bucket is positive; it may drive the
  bucket into debt, which the following seconds repay before anything optional runs again.

Startup allowance: the bucket starts with `allowance` CPU-seconds (default 1.0), and holds at
most `cap` (default 1.0). Attaching to a large tree spends it at once (a first rollup and a
baseline COW scan of every process); after it is spent, the process averages at most `share`
of one core over any window longer than cap / share (20 s at the defaults). Work that is
never deferred: a new process's first rollup, a process's rollup after `max_staleness`, and
the final scans when a recording ends (docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["CpuBudget"]

#: The bucket fills at this share of the budget. Admitted work runs until the bucket is spent,
#: so a process with work pending averages the fill rate; what cannot be deferred (rollups
#: after max_staleness, quick scans, a scan that overruns its estimate) lands on top of it.
#: 10 % headroom keeps a steady window's average under the budget itself (measured on a
#: 64-worker attach: 4.9-5.2 % of one core at a 100 % fill, docs/performance.md).
HEADROOM = 0.9


class CpuBudget:
    def __init__(
        self,
        share: float = 0.05,
        *,
        allowance: float = 1.0,
        cap: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("budget must be in (0, 1]")
        self.share = share
        self.cap = cap
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.tokens = allowance
        self.spent = 0.0  # process CPU seconds charged so far
        self.started_at = clock()
        self._last_t = self.started_at
        self._last_cpu = cpu_clock()
        self._reserved = 0.0

    def settle(self) -> float:
        """Fill by elapsed time, charge the process's CPU since the last call; returns it."""
        now, cpu = self.clock(), self.cpu_clock()
        used = max(cpu - self._last_cpu, 0.0)
        self.tokens += self._reserved  # reservations are replaced by the measured cost
        self._reserved = 0.0
        fill = HEADROOM * self.share * (now - self._last_t)
        self.tokens = min(self.tokens + fill, self.cap) - used
        self._last_t, self._last_cpu = now, cpu
        self.spent += used
        return used

    def reserve(self, cost: float) -> bool:
        """Admit work of expected `cost` CPU-seconds if the bucket holds it."""
        if self.tokens < cost:
            return False
        self.tokens -= cost
        self._reserved += cost
        return True

    def force(self, cost: float) -> None:
        """Work that runs whatever the bucket says (its cost is still charged)."""
        self.tokens -= cost
        self._reserved += cost

    @property
    def positive(self) -> bool:
        """Optional background work (scans, jobs) may start."""
        return self.tokens > 0

    def fraction(self) -> float:
        """The process's CPU over the wall time since the budget started, of one core."""
        elapsed = self.clock() - self.started_at
        return self.spent / elapsed if elapsed > 0 else 0.0
