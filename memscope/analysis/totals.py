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
I64 = npt.NDArray[np.int64]


def load_columns(
    rec: Recording, names: tuple[str, ...], sums: dict[str, tuple[str, ...]] | None = None
) -> tuple[I64, F64, dict[str, F64]]:
    """(process_id, t, {name: values}) sorted by (process_id, t); NULL becomes NaN.

    A name is a samples column, or a key of `sums` (name -> the columns it adds up)."""
    parts = sums or {}
    stored = sorted({c for n in names for c in parts.get(n, (n,))})
    cols = rec.columns(stored)
    values: dict[str, F64] = {}
    for name in names:
        terms = parts.get(name, (name,))
        total = cols.values[terms[0]]
        for term in terms[1:]:
            total = total + cols.values[term]
        values[name] = total
    return cols.process_id, cols.t, values


def forward_fill(process_id: I64, values: F64) -> F64:
    """Each row's latest non-NaN value of the same process at or before it; 0 if none.

    `process_id` must be grouped (rows of one process contiguous, in time order)."""
    idx: I64 = np.arange(values.size)
    new_process = np.r_[True, process_id[1:] != process_id[:-1]]
    last = np.maximum.accumulate(np.where(np.isnan(values), -1, idx))
    first = np.maximum.accumulate(np.where(new_process, idx, 0))
    filled: F64 = np.where(last >= first, values[np.clip(last, 0, None)], 0.0)
    return filled


def tree_sums(process_id: I64, t: F64, values: dict[str, F64]) -> tuple[F64, dict[str, F64]]:
    """(ticks, {name: Σ per tick}) with rollup values carried forward per process."""
    if t.size == 0:
        return np.zeros(0), {name: np.zeros(0) for name in values}
    ticks, tick_idx = np.unique(t, return_inverse=True)
    sums = {
        name: np.bincount(
            tick_idx.ravel(), weights=forward_fill(process_id, v), minlength=ticks.size
        ).astype(np.float64)
        for name, v in values.items()
    }
    return ticks, sums
