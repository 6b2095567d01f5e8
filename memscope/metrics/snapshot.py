"""What the exporter exposes: metric definitions and an immutable snapshot of one tick.

The sampler thread builds a new `Snapshot` after every tick and swaps it into `SnapshotBox`;
HTTP scrapes (other threads) read whichever snapshot is current. A snapshot is never
mutated after it is published, so readers need no lock beyond the reference swap.

Per-process values are keyed by short names (`PROCESS_METRICS`); a key missing from a
process's `values` means "not measured" and produces no sample, and a metric no process
has is not exposed at all (so COW and leak series appear only once something measures them).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "PROCESS_LABELS",
    "PROCESS_METRICS",
    "TREE_METRICS",
    "MetricDef",
    "ProcessPoint",
    "Snapshot",
    "SnapshotBox",
]


class MetricDef(NamedTuple):
    key: str
    name: str
    help: str


PROCESS_LABELS = ("role", "slot", "command")

PROCESS_METRICS: tuple[MetricDef, ...] = (
    MetricDef("uss", "memscope_process_uss_bytes",
              "Unique set size (Private_Clean + Private_Dirty) from the latest smaps_rollup."),
    MetricDef("pss", "memscope_process_pss_bytes",
              "Proportional set size from the latest smaps_rollup."),
    MetricDef("rss", "memscope_process_rss_bytes",
              "Resident set size from the latest smaps_rollup (counts shared pages fully)."),
    MetricDef("swap", "memscope_process_swap_bytes",
              "Swapped-out bytes from the latest smaps_rollup."),
    MetricDef("cow_copied", "memscope_process_cow_copied_bytes",
              "Inherited bytes this process has copied since its fork (COW broken),"
              " latest scan."),
    MetricDef("cow_shared", "memscope_process_cow_shared_bytes",
              "Inherited bytes still shared with the parent, latest scan."),
    MetricDef("cow_inherited", "memscope_process_cow_inherited_bytes",
              "Bytes present in the parent at this process's addresses (copied + shared),"
              " latest scan."),
    MetricDef("leak_slope", "memscope_process_leak_slope_bytes_per_second",
              "Estimated USS growth rate after warm-up."),
    MetricDef("pid", "memscope_process_pid",
              "PID of the process now in this slot (a value, not a label, to bound series)."),
    MetricDef("started", "memscope_process_start_time_seconds",
              "Unix time memscope first saw the process now in this slot."),
    MetricDef("sampled", "memscope_process_sample_timestamp_seconds",
              "Unix time of the smaps_rollup behind this slot's memory values."),
)

TREE_METRICS: tuple[MetricDef, ...] = (
    MetricDef("pss", "memscope_tree_pss_bytes",
              "Sum of PSS over the live tree: its true footprint."),
    MetricDef("uss", "memscope_tree_uss_bytes", "Sum of USS over the live tree."),
    MetricDef("rss", "memscope_tree_rss_bytes",
              "Sum of RSS over the live tree (counts shared pages once per process)."),
    MetricDef("swap", "memscope_tree_swap_bytes", "Sum of swap over the live tree."),
    MetricDef("cow_copied", "memscope_tree_cow_copied_bytes",
              "Sum of copied inherited bytes over the live tree."),
    MetricDef("peak_pss", "memscope_tree_peak_pss_bytes",
              "Highest tree PSS seen since memscope started."),
    MetricDef("processes", "memscope_tree_processes", "Live processes in the tree."),
    MetricDef("workers", "memscope_tree_workers", "Live direct children of the root."),
)


@dataclass(frozen=True, slots=True)
class ProcessPoint:
    role: str
    slot: int
    command: str
    values: Mapping[str, float]

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.role, str(self.slot), self.command)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The tree at one tick (or at the end of a recording)."""

    t: float
    processes: tuple[ProcessPoint, ...] = ()
    tree: Mapping[str, float] = field(default_factory=dict)
    ticks: int = 0
    mode: str = ""


class SnapshotBox:
    """The current snapshot, swapped whole by the writer, read by any number of scrapes."""

    def __init__(self, initial: Snapshot | None = None) -> None:
        self._lock = threading.Lock()
        self._snapshot = initial

    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def get(self) -> Snapshot | None:
        with self._lock:
            return self._snapshot
