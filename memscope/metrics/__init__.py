"""Prometheus exporter: live `/metrics` while recording, and the same families for textfiles.

See docs/fleet.md for the metrics, their labels and how to deploy memscope beside a service.
The collector (prometheus_client) and the server (prometheus_client, http.server) are imported
on first use, so `report` and a recording without --serve-metrics load neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memscope.metrics.feed import MetricsFeed, ProcessSource
from memscope.metrics.labels import SlotAllocator, command_name, sanitise
from memscope.metrics.snapshot import (
    PROCESS_METRICS,
    TREE_METRICS,
    ProcessPoint,
    Snapshot,
    SnapshotBox,
)

if TYPE_CHECKING:
    from memscope.metrics.collector import MemscopeCollector, registry_for
    from memscope.metrics.server import Bind, MetricsServer, parse_bind

_LAZY = {
    "MemscopeCollector": "memscope.metrics.collector",
    "registry_for": "memscope.metrics.collector",
    "Bind": "memscope.metrics.server",
    "MetricsServer": "memscope.metrics.server",
    "parse_bind": "memscope.metrics.server",
}

__all__ = [
    "PROCESS_METRICS",
    "TREE_METRICS",
    "Bind",
    "MemscopeCollector",
    "MetricsFeed",
    "MetricsServer",
    "ProcessPoint",
    "ProcessSource",
    "SlotAllocator",
    "Snapshot",
    "SnapshotBox",
    "command_name",
    "parse_bind",
    "registry_for",
    "sanitise",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
