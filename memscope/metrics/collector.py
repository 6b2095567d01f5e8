"""A prometheus_client Collector that turns the current `Snapshot` into metric families.

The exposition text (Prometheus 0.0.4 or OpenMetrics, as the scraper negotiates) is written by
prometheus_client itself; memscope only yields families. Before the first tick only
`memscope_info` is exposed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from memscope import __version__
from memscope.metrics.snapshot import (
    PROCESS_LABELS,
    PROCESS_METRICS,
    TREE_METRICS,
    MetricDef,
    Snapshot,
)

__all__ = ["MemscopeCollector", "registry_for"]


def _unit(name: str) -> str:
    for unit in ("bytes", "seconds"):
        if name.endswith("_" + unit):
            return unit
    return ""


def _gauge(definition: MetricDef, labels: tuple[str, ...] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        definition.name, definition.help, labels=labels, unit=_unit(definition.name)
    )


class MemscopeCollector:
    """Yields the families of whatever snapshot `source()` returns at scrape time."""

    def __init__(self, source: Callable[[], Snapshot | None]) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        # Registering must not trigger a collect (the snapshot may not exist yet).
        return []

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        info = GaugeMetricFamily(
            "memscope_info", "memscope version and recording mode (value is always 1).",
            labels=("version", "mode"),
        )
        info.add_metric((__version__, snapshot.mode if snapshot else ""), 1)
        yield info
        if snapshot is None:
            return

        for definition in PROCESS_METRICS:
            family = _gauge(definition, PROCESS_LABELS)
            for point in snapshot.processes:
                value = point.values.get(definition.key)
                if value is not None:
                    family.add_metric(point.labels, value)
            if family.samples:
                yield family

        for definition in TREE_METRICS:
            value = snapshot.tree.get(definition.key)
            if value is not None:
                family = _gauge(definition)
                family.add_metric((), value)
                yield family

        if snapshot.ticks:
            yield CounterMetricFamily(
                "memscope_sampler_ticks", "Sampling ticks since memscope started.",
                value=snapshot.ticks,
            )
        last = GaugeMetricFamily(
            "memscope_last_tick_timestamp_seconds",
            "Unix time of the tick these values come from.", unit="seconds",
        )
        last.add_metric((), snapshot.t)
        yield last


def registry_for(source: Callable[[], Snapshot | None]) -> CollectorRegistry:
    """A registry holding only memscope's collector (no process/platform defaults)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MemscopeCollector(source))
    return registry
