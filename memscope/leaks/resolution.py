"""How each worker's COW sites were resolved, as the recording keeps it (meta
`cow_sites_resolution`, written by the leaks hook): typed for the report's renderers.

A row is `{"pid", "t", **ResolutionStats.as_dict()}` (memscope.cow.site_estimate) or `{"pid",
"t", "error"}`. Recordings come from other memscope versions (fields added since: `page_rate`,
`read_seconds`, `parse_seconds`) or may be damaged: a missing or mistyped field takes its
default, a row without an integer pid is skipped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from memscope.cow.site_estimate import ResolutionStats
from memscope.units import format_bytes

__all__ = ["WorkerResolution", "resolutions_from_meta"]

_FIELDS = {f.name: f.type for f in dataclasses.fields(ResolutionStats)}


@dataclass(frozen=True)
class WorkerResolution:
    pid: int
    t: float
    stats: ResolutionStats  # stats.error: why it failed ("" when it did not)

    @property
    def total_seconds(self) -> float:
        """memscope's wall time for this worker's sites: page read + parse + lookups."""
        s = self.stats
        return s.read_seconds + s.parse_seconds + s.seconds

    @property
    def estimated_share(self) -> float:
        """Share of the worker's copied bytes behind its sites that no lookup answered: the
        pages left out of the page sample, and in the parsed pages the blocks left out of
        the lookup sample (both scaled up from what was resolved)."""
        s = self.stats
        parsed = s.resolved_bytes + s.sampled_bytes
        if parsed <= 0:
            return 0.0
        return 1.0 - s.page_rate * s.resolved_bytes / parsed

    def describe(self) -> str:
        """One line for the text report."""
        s = self.stats
        if s.error:
            return f"sites of {self.pid}: not resolved: {s.error}"
        split = ""
        if s.read_seconds or s.parse_seconds:
            split = (f" (read {s.read_seconds:.2f}, parse {s.parse_seconds:.2f},"
                     f" lookups {s.seconds:.2f})")
        pages = "all copied pages parsed"
        if s.page_rate < 1.0:
            pages = f"{s.page_rate:.1%} of the copied pages parsed"
        blocks = f"{s.blocks:,} blocks ({s.looked_up:,} looked up, {s.cached:,} shared)"
        if s.sample_rate < 1.0:
            blocks += f", {s.sample_rate:.1%} of them in the lookup sample"
        return (f"sites of {self.pid}: {self.total_seconds:.2f} s{split}; {pages}; {blocks};"
                f" {format_bytes(s.resolved_bytes)} resolved,"
                f" {format_bytes(s.sampled_bytes)} of the parsed estimated,"
                f" {format_bytes(s.untraced_bytes)} of the resolved untraced;"
                f" {self.estimated_share:.0%} of the copied bytes estimated")


def _value(name: str, raw: Any) -> Any:
    default = getattr(ResolutionStats(), name)
    if isinstance(default, bool) or isinstance(raw, bool):
        return default
    if isinstance(default, float) and isinstance(raw, int | float):
        return float(raw)
    if isinstance(default, int) and isinstance(raw, int):
        return raw
    if isinstance(default, str) and isinstance(raw, str):
        return raw
    return default


def resolutions_from_meta(rows: Any) -> list[WorkerResolution]:
    """The meta rows as WorkerResolution, by pid (see the module docstring)."""
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("pid"), int):
            continue
        t = row.get("t")
        stats = ResolutionStats(**{k: _value(k, row[k]) for k in _FIELDS if k in row})
        out.append(WorkerResolution(row["pid"], float(t) if isinstance(t, int | float) else 0.0,
                                    stats))
    return sorted(out, key=lambda r: r.pid)
