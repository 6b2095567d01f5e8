"""A free per-tick estimate of each worker's copied bytes, between COW scans.

A page a worker copies (or a new page it writes) becomes Private_Dirty, and the sampler reads
Private_Dirty in every full rollup. So, from numbers already read:

    estimate = copied bytes of the last scan + Private_Dirty growth since that scan started

(before the first scan: the growth since the worker's first rollup). New private memory counts
too, so the estimate errs high, never low.

Rollups are rationed by the CPU budget, so activity is also followed through the worker's
minor-fault counter (/proc/PID/stat, O(1), read every tick while COW scans are on: a
copy-on-write break is a minor fault). Together they say when a worker is still *copying
fast* (`settle_bytes` or more of faults or Private_Dirty within the last `settle_s`), when its
copying has *settled*, and how far it *moved* since its last scan: the scheduler's inputs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from memscope.cow.store import write_estimates
from memscope.procfs import Rollup
from memscope.tree import Member

__all__ = ["Estimates"]

Key = tuple[int, int]
_RECORD_STEP = 64 << 10  # a recorded estimate row when it moved this much


@dataclass
class _Worker:
    record_id: int
    dirty: int  # Private_Dirty at the latest rollup
    dirty_at_scan: int  # ... when the last finished scan started (or at first sight)
    scan_copied: int = 0
    pending: int | None = None  # Private_Dirty when the scan in flight started
    rollup: Rollup | None = None
    history: list[tuple[float, int]] = field(default_factory=list)  # (t, dirty)
    copying: bool = False
    written: int | None = None
    faults: int | None = None  # minor faults at the latest tick
    faults_at_scan: int | None = None
    pending_faults: int | None = None
    fault_history: list[tuple[float, int]] = field(default_factory=list)


class Estimates:
    def __init__(self, settle_bytes: int = 256 << 10, settle_s: float = 0.3) -> None:
        self.settle_bytes = settle_bytes
        self.settle_s = settle_s
        self._w: dict[Key, _Worker] = {}
        self._rows: list[tuple[int, float, int]] = []

    def update(self, t: float, workers: Iterable[Member], latest: Mapping[int, Rollup]) -> None:
        """Take in this tick's rollups (only new ones change anything)."""
        for m in workers:
            rollup = latest.get(m.record_id)
            if rollup is None:
                continue
            w = self._w.get(m.key)
            if w is None:
                w = self._w[m.key] = _Worker(m.record_id, rollup.private_dirty,
                                             rollup.private_dirty)
            if rollup is w.rollup:
                continue
            if w.rollup is None:  # first rollup (the worker may be known by its faults)
                w.dirty_at_scan = rollup.private_dirty
                if w.pending is not None:
                    w.pending = rollup.private_dirty
            w.rollup = rollup
            w.dirty = rollup.private_dirty
            w.history.append((t, w.dirty))
            older = [d for ts, d in w.history if ts <= t - self.settle_s]
            if older:
                w.history = [(ts, d) for ts, d in w.history if ts >= t - 3 * self.settle_s]
            if w.faults is not None:
                pass  # the fault counter, read every tick, decides whether it is copying
            elif older:
                w.copying = abs(w.dirty - older[-1]) >= self.settle_bytes
            elif len(w.history) > 1:
                w.copying = abs(w.dirty - w.history[-2][1]) >= self.settle_bytes
            est = self._estimate(w)
            if w.written is None or abs(est - w.written) >= _RECORD_STEP:
                w.written = est
                self._rows.append((w.record_id, t, est))

    def faults(self, m: Member, t: float, minflt: int) -> None:
        """This tick's minor-fault count of worker `m`."""
        w = self._w.get(m.key)
        if w is None:
            w = self._w[m.key] = _Worker(m.record_id, 0, 0)
        if w.faults_at_scan is None:
            w.faults_at_scan = minflt
        w.faults = minflt
        w.fault_history.append((t, minflt))
        older = [f for ts, f in w.fault_history if ts <= t - self.settle_s]
        if older:
            w.fault_history = [(ts, f) for ts, f in w.fault_history if ts >= t - 3 * self.settle_s]
            w.copying = (minflt - older[-1]) * 4096 >= self.settle_bytes
        elif len(w.fault_history) > 1:
            w.copying = (minflt - w.fault_history[-2][1]) * 4096 >= self.settle_bytes

    @staticmethod
    def _estimate(w: _Worker) -> int:
        return w.scan_copied + max(0, w.dirty - w.dirty_at_scan)

    def copied(self, key: Key, scan_copied: int | None) -> int | None:
        """The estimate (bytes), or the last scan's figure when there is no rollup yet."""
        w = self._w.get(key)
        if w is None:
            return scan_copied
        return self._estimate(w)

    def moved(self, key: Key) -> int:
        """Private_Dirty growth since the last finished scan started (0 if unknown)."""
        w = self._w.get(key)
        if w is None:
            return 0
        faulted = 0
        if w.faults is not None and w.faults_at_scan is not None:
            faulted = (w.faults - w.faults_at_scan) * 4096
        return max(0, w.dirty - w.dirty_at_scan, faulted)

    def copying(self, key: Key) -> bool:
        w = self._w.get(key)
        return w is not None and w.copying

    def mark_scan(self, key: Key) -> None:
        """A scan of `key` starts now."""
        w = self._w.get(key)
        if w is not None:
            w.pending = w.dirty
            w.pending_faults = w.faults

    def scanned(self, key: Key, copied: int | None) -> None:
        """The scan started at mark_scan() finished (copied None: it failed)."""
        w = self._w.get(key)
        if w is None or w.pending is None:
            return
        if copied is not None:
            w.dirty_at_scan, w.scan_copied = w.pending, copied
            if w.pending_faults is not None:
                w.faults_at_scan = w.pending_faults
        w.pending = None

    def forget(self, key: Key) -> None:
        self._w.pop(key, None)

    def write(self, conn: sqlite3.Connection) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            write_estimates(conn, rows)
