"""Is a process's latest COW scan still its copied bytes? (the gate's "stale data" test)

Copying a page raises the worker's USS by that page, so USS growth after a scan is memory the
scan did not see: the scan is *stale* when, before the shutdown window (analysis.steady),
the process's USS rose above its value at the scan by at least
`max(STALE_MIN_BYTES, STALE_FRACTION × USS at the scan)`. New private allocations raise USS
too, so a stale scan may still be right; the gate cannot know, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from memscope.recording import Recording

if TYPE_CHECKING:
    from memscope.analysis.summary import Summary

__all__ = [
    "STALE_FRACTION",
    "STALE_MIN_BYTES",
    "Staleness",
    "add_cow_staleness",
    "cow_staleness",
    "significant",
]

STALE_MIN_BYTES = 2 * 1024 * 1024
STALE_FRACTION = 0.10


@dataclass(frozen=True, slots=True)
class Staleness:
    scanned_at: float
    uss_at_scan: int
    grown: int  # USS rise after the scan (bytes)
    grown_at: float  # when the USS reached its highest value after the scan

    def describe(self, started_at: float) -> str:
        mib = self.grown / (1024 * 1024)
        return (
            f"COW scan at +{self.scanned_at - started_at:.1f}s is stale: USS grew {mib:.1f} MiB"
            f" after it (by +{self.grown_at - started_at:.1f}s)"
        )


def _threshold(uss: int) -> float:
    return max(STALE_MIN_BYTES, STALE_FRACTION * uss)


def significant(uss_at_scan: int, uss_now: int) -> bool:
    """Did USS grow enough since a scan to make the scan stale?"""
    return uss_now - uss_at_scan >= _threshold(uss_at_scan)


def cow_staleness(
    rec: Recording, process_id: int, scanned_at: float, until: float | None = None
) -> Staleness | None:
    """The staleness of a scan of `process_id` taken at `scanned_at`, judged on full samples
    up to `until` (the shutdown start; None: the whole recording). None: the scan is current."""
    cols = rec.columns(("uss",)).of(process_id)
    full = ~np.isnan(cols.values["uss"])
    t, uss = cols.t[full], cols.values["uss"][full]
    earlier = np.flatnonzero(t <= scanned_at)
    if earlier.size == 0:
        return None
    at_scan = int(uss[earlier[-1]])
    end = float("inf") if until is None else until
    later = np.flatnonzero((t > scanned_at) & (t < end))
    if later.size == 0:
        return None
    top = later[np.argmax(uss[later])]  # the first sample at the highest USS after the scan
    if not significant(at_scan, int(uss[top])):
        return None
    return Staleness(scanned_at, at_scan, int(uss[top]) - at_scan, float(t[top]))


def add_cow_staleness(rec: Recording, summary: Summary) -> None:
    """`ProcessSummary.extra["cow_stale"]`: why a worker's latest scan is older than its last
    significant USS growth (after the COW and steady sections)."""
    if summary.cow is None:
        return
    until = (summary.extra.get("steady") or {}).get("shutdown_at")
    for p in summary.processes:
        c = summary.cow.processes.get(p.id)
        if c is not None:
            stale = cow_staleness(rec, p.id, c.latest.t, until)
            if stale is not None:
                p.extra["cow_stale"] = stale.describe(summary.started_at)
