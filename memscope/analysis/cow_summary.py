"""COW part of the summary: latest scan, timeline and advice per process (pure).

`add_cow(recording, summary)` is a summary extension: for every process with COW scans it sets
`ProcessSummary.extra["cow"]` (the JSON `processes[].cow` object: latest scan, plus a
`timeline` of every scan with the copy rate), and `Summary.extra["advice"]` (top-level
`advice[]`) from the latest scan of each process. Everything it stores is JSON-ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from memscope.analysis.advice import Advice, advise
from memscope.analysis.summary import Summary
from memscope.cow._model import CowScan
from memscope.cow.store import read_scans
from memscope.recording import Recording

__all__ = ["add_cow", "advice_json", "cow_json", "timeline_json"]

TOP_TYPES = 15


def timeline_json(scans: Sequence[CowScan]) -> list[dict[str, Any]]:
    """One row per scan: bytes per class, and the copy rate since the previous scan (B/s)."""
    rows: list[dict[str, Any]] = []
    prev: CowScan | None = None
    for scan in scans:
        rate = None
        if prev is not None and scan.scanned_at > prev.scanned_at:
            rate = (scan.copied_bytes - prev.copied_bytes) / (scan.scanned_at - prev.scanned_at)
        rows.append(
            {
                "t": scan.scanned_at,
                "copied_bytes": scan.copied_bytes,
                "shared_bytes": scan.shared_bytes,
                "new_private_bytes": scan.new_private_bytes,
                "copy_rate": rate,
            }
        )
        prev = scan
    return rows


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
        "timeline": timeline_json(scans or [scan]),
    }


def advice_json(items: Sequence[Advice]) -> list[dict[str, Any]]:
    return [asdict(a) for a in items]


def add_cow(rec: Recording, summary: Summary) -> None:
    """Summary extension: COW data of the recording into the summary's extras."""
    if not rec.has_table("cow_scans"):
        return
    per_process = read_scans(rec.conn)
    if not per_process:
        return
    latest: list[CowScan] = []
    for proc in summary.processes:
        scans = per_process.get(proc.id)
        if not scans:
            continue
        proc.extra["cow"] = cow_json(scans[-1], scans)
        latest.append(scans[-1])
    summary.extra["advice"] = advice_json(advise(latest))
