"""Baselines: every metric a recording holds, saved as JSON, to compare later runs against.

Per selector, a baseline stores the value an upper-bound rule judges (the tree's value, or the
largest value among the selected processes) and which process it came from.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from memscope import __version__
from memscope.check.metrics import METRICS, MetricSource, MissingMetric, process_label
from memscope.errors import InputError
from memscope.outputs import json_text, write_text_atomically

__all__ = ["BASELINE_FORMAT", "IMPLICIT_KEYS", "Baseline", "baseline_values", "load_baseline",
           "save_baseline"]

BASELINE_FORMAT = 1

#: What `--baseline` compares when no rule names the baseline: sizes where "more" is worse.
IMPLICIT_KEYS = (
    "tree.pss.peak",
    "tree.rss.peak",
    "root.uss.peak",
    "root.pss.peak",
    "worker.uss.peak",
    "worker.pss.peak",
    "worker.cow.copied",
)


@dataclass(frozen=True, slots=True)
class Baseline:
    path: str
    values: dict[str, float]
    processes: dict[str, str]


def baseline_values(source: MetricSource) -> dict[str, dict[str, Any]]:
    """`selector.metric` -> {value, dimension, process} for every metric the recording holds."""
    out: dict[str, dict[str, Any]] = {}
    for metric in METRICS.values():
        for selector in metric.selectors:
            try:
                m = source.measure(selector, metric, lambda v: v)
            except MissingMetric:
                continue
            entry: dict[str, Any] = {"value": m.value, "dimension": metric.dimension.value}
            if m.process is not None:
                entry["process"] = process_label(m.process)
            out[f"{selector}.{metric.name}"] = entry
    return out


def save_baseline(source: MetricSource, path: str) -> dict[str, Any]:
    doc = {
        "memscope_baseline": BASELINE_FORMAT,
        "memscope_version": __version__,
        "created_at": time.time(),
        "recording": os.path.abspath(source.path),
        "command": source.summary.command,
        "metrics": baseline_values(source),
    }
    text = json_text(doc, indent=2, sort_keys=True) + "\n"  # before touching the file
    try:
        write_text_atomically(path, lambda fh: fh.write(text))
    except OSError as exc:
        raise InputError(f"cannot write baseline {path}: {exc.strerror}") from None
    return doc


def load_baseline(path: str) -> Baseline:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: no such baseline") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a memscope baseline ({exc})") from None
    if not isinstance(doc, dict) or "memscope_baseline" not in doc:
        raise InputError(f"{path}: not a memscope baseline (no 'memscope_baseline' key)")
    if doc["memscope_baseline"] > BASELINE_FORMAT:
        raise InputError(f"{path}: baseline format {doc['memscope_baseline']} is newer than"
                         f" this memscope supports ({BASELINE_FORMAT}); upgrade memscope")
    metrics = doc.get("metrics")
    if not isinstance(metrics, dict):
        raise InputError(f"{path}: not a memscope baseline ('metrics' is not an object)")
    try:
        values = {k: float(v["value"]) for k, v in metrics.items()}
    except (TypeError, KeyError, ValueError):
        raise InputError(f"{path}: baseline metric without a numeric 'value'") from None
    processes = {k: str(v["process"]) for k, v in metrics.items() if "process" in v}
    return Baseline(path, values, processes)
