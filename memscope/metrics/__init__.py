"""Prometheus exporter: live `/metrics` while recording, and the same families for textfiles.

See docs/fleet.md for the metrics, their labels and how to deploy memscope beside a service.
"""

from memscope.metrics.collector import MemscopeCollector, registry_for
from memscope.metrics.feed import MetricsFeed, ProcessSource
from memscope.metrics.labels import SlotAllocator, command_name, sanitise
from memscope.metrics.server import Bind, MetricsServer, parse_bind
from memscope.metrics.snapshot import (
    PROCESS_METRICS,
    TREE_METRICS,
    ProcessPoint,
    Snapshot,
    SnapshotBox,
)

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
