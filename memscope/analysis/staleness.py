"""Is a process's latest COW scan still its copied bytes? (the gate's "stale data" test)

Copying a page raises the worker's USS by that page, so USS growth after a scan is memory the
scan did not see: the scan is *stale* when, before the shutdown window (analysis.steady),
the process's USS rose above its value at the scan by at least
`max(STALE_MIN_BYTES, STALE_FRACTION × USS at the scan)`. New private allocations raise USS
too, so a stale scan may still be right; the gate cannot know, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from memscope.recording import Recording

__all__ = ["STALE_FRACTION", "STALE_MIN_BYTES", "Staleness", "cow_staleness", "significant"]

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
    before = rec.conn.execute(
        "SELECT uss FROM samples WHERE process_id = ? AND t <= ? AND uss IS NOT NULL"
        " ORDER BY t DESC LIMIT 1",
        (process_id, scanned_at),
    ).fetchone()
    if before is None:
        return None
    end = float("inf") if until is None else until
    after = rec.conn.execute(
        "SELECT t, uss FROM samples WHERE process_id = ? AND t > ? AND t < ?"
        " AND uss IS NOT NULL ORDER BY uss DESC, t LIMIT 1",
        (process_id, scanned_at, end),
    ).fetchone()
    if after is None:
        return None
    grown = int(after[1]) - int(before[0])
    if not significant(int(before[0]), int(after[1])):
        return None
    return Staleness(scanned_at, int(before[0]), grown, float(after[0]))
