"""COW part of the summary: latest scan, timeline and advice per process (pure).

`add_cow(recording, summary)` is a summary extension: for every process with COW scans it sets
`ProcessSummary.extra["cow"]` (the JSON `processes[].cow` object: latest scan, plus a
`timeline` of every scan with the copy rate, in the columnar shape docs/reports.md gives),
and `Summary.extra["advice"]` (top-level `advice[]`) from the latest scan of each process.
Everything it stores is JSON-ready.
"""

from __future__ import annotations

import itertools
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
