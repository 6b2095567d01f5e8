"""A free per-tick estimate of each worker's copied bytes, between COW scans.

A page a worker copies (or a new page it writes) becomes Private_Dirty, and the sampler reads
Private_Dirty in every full rollup. So, from numbers already read:

    estimate = copied bytes of the last scan + Private_Dirty growth since that scan started

(before the first scan: the growth since the worker's first rollup). New private memory counts
too, so the estimate errs high, never low. It says when a worker is still *copying fast*
(Private_Dirty moved by `settle_bytes` or more within the last `settle_s`), when its copying
has *settled*, and how far it *moved* since its last scan: the scheduler's inputs.
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
            w.rollup = rollup
            w.dirty = rollup.private_dirty
            w.history.append((t, w.dirty))
            older = [d for ts, d in w.history if ts <= t - self.settle_s]
            if older:
                w.history = [(ts, d) for ts, d in w.history if ts >= t - 3 * self.settle_s]
                w.copying = abs(w.dirty - older[-1]) >= self.settle_bytes
            elif len(w.history) > 1:
                w.copying = abs(w.dirty - w.history[-2][1]) >= self.settle_bytes
            est = self._estimate(w)
            if w.written is None or abs(est - w.written) >= _RECORD_STEP:
                w.written = est
                self._rows.append((w.record_id, t, est))

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
        return 0 if w is None else max(0, w.dirty - w.dirty_at_scan)

    def copying(self, key: Key) -> bool:
        w = self._w.get(key)
        return w is not None and w.copying

    def mark_scan(self, key: Key) -> None:
        """A scan of `key` starts now."""
        w = self._w.get(key)
        if w is not None:
            w.pending = w.dirty

    def scanned(self, key: Key, copied: int | None) -> None:
        """The scan started at mark_scan() finished (copied None: it failed)."""
        w = self._w.get(key)
        if w is None or w.pending is None:
            return
        if copied is not None:
            w.dirty_at_scan, w.scan_copied = w.pending, copied
        w.pending = None

    def forget(self, key: Key) -> None:
        self._w.pop(key, None)

    def write(self, conn: sqlite3.Connection) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            write_estimates(conn, rows)
