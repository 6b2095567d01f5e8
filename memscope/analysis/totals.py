"""Tree totals over time, vectorised: Σ over live processes of each one's latest value.

Counters (rss) exist for every live process at every tick; rollup values (pss, uss) only on
the ticks the sampler's budget allowed one. At each tick the sum takes, for every process
sampled at that tick, its most recent value at or before it (0 before its first). Used by the
summary (peaks) and the HTML report (the ΣPSS / ΣRSS chart), so both agree by construction.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from memscope.recording import Recording

__all__ = ["forward_fill", "load_columns", "tree_sums"]

F64 = npt.NDArray[np.float64]
SLICE_ROWS = 1 << 18
I64 = npt.NDArray[np.int64]


def load_columns(rec: Recording, names: tuple[str, ...]) -> tuple[I64, F64, dict[str, F64]]:
    """(process_id, t, {name: values}) sorted by (process_id, t); NULL becomes NaN.

    A name is a samples column or a derived one ("shared": shared_clean + shared_dirty)."""
    cols = rec.columns(names)
    return cols.process_id, cols.t, cols.values


def _group_first(process_id: I64) -> npt.NDArray[np.int32]:
    """For each row, the index of its process's first row (rows grouped by process)."""
    starts = np.flatnonzero(np.r_[True, process_id[1:] != process_id[:-1]]).astype(np.int32)
    return np.repeat(starts, np.diff(np.r_[starts, process_id.size]))


def forward_fill(
    process_id: I64, values: F64, first: npt.NDArray[np.int32] | None = None
) -> F64:
    """Each row's latest non-NaN value of the same process at or before it; 0 if none.

    `process_id` must be grouped (rows of one process contiguous, in time order). Indices are
    int32 and worked in place: a report of millions of samples stays within its memory goal.
    """
    if values.size >= 2**31:  # pragma: no cover - 16 GiB of samples per column
        raise ValueError("too many samples")
    if first is None:
        first = _group_first(process_id)
    last = np.arange(values.size, dtype=np.int32)
    last[np.isnan(values)] = -1
    np.maximum.accumulate(last, out=last)
    missing = last < first
    np.maximum(last, 0, out=last)
    filled: F64 = values[last]
    filled[missing] = 0.0
    return filled


def _slices(process_id: I64, rows: int) -> list[tuple[int, int]]:
    """Row ranges of about `rows` rows that never split a process."""
    starts = np.flatnonzero(np.r_[True, process_id[1:] != process_id[:-1]]).tolist()
    out: list[tuple[int, int]] = []
    lo = 0
    for start in [*starts[1:], process_id.size]:
        if start - lo >= rows or start == process_id.size:
            out.append((lo, start))
            lo = start
    return out


def tree_sums(process_id: I64, t: F64, values: dict[str, F64]) -> tuple[F64, dict[str, F64]]:
    """(ticks, {name: Σ per tick}) with rollup values carried forward per process.

    Worked in slices of whole processes, so the temporaries stay a fraction of the columns."""
    if t.size == 0:
        return np.zeros(0), {name: np.zeros(0) for name in values}
    ticks = np.sort(t, kind="stable")  # t is sorted per process: merging runs is fast
    ticks = ticks[np.r_[True, ticks[1:] != ticks[:-1]]]
    sums = {name: np.zeros(ticks.size) for name in values}
    for lo, hi in _slices(process_id, SLICE_ROWS):
        pid = process_id[lo:hi]
        tick_idx = np.searchsorted(ticks, t[lo:hi])
        first = _group_first(pid)
        for name, v in values.items():
            sums[name] += np.bincount(tick_idx, weights=forward_fill(pid, v[lo:hi], first),
                                      minlength=ticks.size)
    return ticks, sums
