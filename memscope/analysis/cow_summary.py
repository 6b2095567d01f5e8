"""The COW feature's summary section (pure reads of the recording).

`summarize_cow(recording, summary)` sets `Summary.cow`, a typed `CowSection`: per process its
latest and peak scan (memscope.cow.store.latest_and_peak, the one answer to that question),
every scan, the copied-bytes estimate between scans, and the advice from the latest scans.
`check` reads the section; the reporters read its JSON view, which it also puts into
`ProcessSummary.extra["cow"]` (JSON `processes[].cow`: latest scan, peak, estimate and a
`timeline` of every scan in the columnar shape docs/reports.md gives) and
`Summary.extra["advice"]` (top-level `advice[]`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from memscope.analysis.advice import Advice, advise
from memscope.analysis.summary import Summary
from memscope.cow._model import QUICK_TARGET, CowScan
from memscope.cow.store import (
    ScanPoint,
    latest_and_peak,
    read_estimates,
    read_scan_points,
    read_scans,
)
from memscope.recording import Recording

__all__ = [
    "CowProcess",
    "CowSection",
    "advice_json",
    "cow_json",
    "summarize_cow",
    "timeline_json",
]


@dataclass(frozen=True)
class CowProcess:
    """COW facts of one process: its scans and the estimate between them."""

    process_id: int
    pid: int
    latest: ScanPoint
    peak: ScanPoint
    scans: list[CowScan]  # oldest first; scans[-1] is `latest` in full
    detail: CowScan  # the latest full scan (types, causes), or scans[-1] if none was full
    estimate: int | None  # the last per-tick estimate of copied bytes (None: none recorded)
    peak_estimate: int | None

    @property
    def last_copied(self) -> int:
        """Never under-report: the latest scan, or the estimate recorded after it if larger."""
        return max(self.latest.copied_bytes, self.estimate or 0)


@dataclass(frozen=True)
class CowSection:
    processes: dict[int, CowProcess]  # process_id ->
    advice: list[Advice]

TOP_TYPES = 15


def timeline_json(scans: Sequence[CowScan]) -> dict[str, list[Any]]:
    """Columns over the scans (the HTML report's shape): time, bytes per class, and the copy
    rate since the previous scan in bytes/s (None for the first)."""
    rates: list[float | None] = [None]
    for prev, scan in itertools.pairwise(scans):
        dt = scan.scanned_at - prev.scanned_at
        rates.append((scan.copied_bytes - prev.copied_bytes) / dt if dt > 0 else None)
    return {
        "t": [s.scanned_at for s in scans],
        "copied": [s.copied_bytes for s in scans],
        "shared": [s.shared_bytes for s in scans],
        "new_private": [s.new_private_bytes for s in scans],
        "swapped": [s.swapped_bytes for s in scans],
        "copy_rate": rates[: len(scans)],
    }


def cow_json(scan: CowScan, scans: Sequence[CowScan] = ()) -> dict[str, Any]:
    """The `processes[].cow` object of the JSON report."""
    inherited = scan.inherited_bytes
    return {
        "scanned_at": scan.scanned_at,
        "mode": scan.mode,
        "target": scan.target,
        "inherited_bytes": inherited,
        "copied_bytes": scan.copied_bytes,
        "copied_fraction": scan.copied_bytes / inherited if inherited else None,
        "shared_bytes": scan.shared_bytes,
        "new_private_bytes": scan.new_private_bytes,
        "swapped_bytes": scan.swapped_bytes,
        "scan_duration_s": scan.duration_s,
        "by_kind": scan.by_kind,
        "by_type": [
            {"type": t.type, "bytes": t.bytes, "objects": t.objects}
            for t in scan.by_type[:TOP_TYPES]
        ],
        "by_cause": dict(scan.by_cause),
        "by_type_cause": {
            t.type: scan.by_type_cause.get(t.type, {}) for t in scan.by_type[:TOP_TYPES]
        },
        "scans": len(scans) or 1,
        "copying": scan.copying,
        "timeline": timeline_json(scans or [scan]),
    }


def advice_json(items: Sequence[Advice]) -> list[dict[str, Any]]:
    """Advice dicts; the recipe is `text` (the key the HTML report shows as the body)."""
    out = []
    for a in items:
        item = asdict(a)
        item["text"] = item.pop("recipe")
        out.append(item)
    return out


def summarize_cow(rec: Recording, summary: Summary) -> None:
    """The COW section (None when the recording has no scan) and its JSON view."""
    points = latest_and_peak(read_scan_points(rec.conn))
    if not points:
        return
    per_process = read_scans(rec.conn)
    estimates = read_estimates(rec.conn)
    section: dict[int, CowProcess] = {}
    for proc in summary.processes:
        scans = per_process.get(proc.id)
        if not scans or proc.id not in points:
            continue
        latest, peak = points[proc.id]
        est = [b for t, b in estimates.get(proc.id, []) if t >= latest.t]
        every = [b for _, b in estimates.get(proc.id, [])]
        full = [s for s in scans if s.target != QUICK_TARGET]
        detail = full[-1] if full else scans[-1]
        cp = CowProcess(proc.id, proc.pid, latest, peak, scans, detail,
                        est[-1] if est else None, max(every) if every else None)
        section[proc.id] = cp
        view = cow_json(scans[-1], scans)
        if detail is not scans[-1]:  # a quick scan last: types from the latest full scan
            types = cow_json(detail)
            for key in ("by_kind", "by_type", "by_cause", "by_type_cause"):
                view[key] = types[key]
            view["types_scanned_at"] = detail.scanned_at
        proc.extra["cow"] = {
            **view,
            "peak_copied_bytes": peak.copied_bytes,
            "peak_scanned_at": peak.t,
            "estimated_copied_bytes": cp.estimate,
            "last_copied_bytes": cp.last_copied,
        }
    advice = advise([cp.detail for cp in section.values()])
    summary.cow = CowSection(section, advice)
    summary.extra["advice"] = advice_json(advice)
