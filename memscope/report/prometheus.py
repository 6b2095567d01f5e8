"""Prometheus textfile report: the exporter's metric families from a recording's last values.

Meant for node_exporter's textfile collector: `memscope report REC --format prometheus
-o /var/lib/node_exporter/textfile/memscope.prom`. `report -o` writes through a temporary file
in the same directory and renames it, so the collector never reads a half-written file (the
temporary name does not end in .prom). The text format is prometheus_client's own.
"""

from __future__ import annotations

from typing import ClassVar, TextIO

from memscope.metrics.recorded import snapshot_from_recording
from memscope.report._base import ReportData

__all__ = ["PrometheusReporter"]


class PrometheusReporter:
    name: ClassVar[str] = "prometheus"
    suffix: ClassVar[str] = ".prom"

    def render(self, data: ReportData, out: TextIO) -> None:
        # prometheus_client is imported only when this format is asked for.
        from prometheus_client.exposition import generate_latest

        from memscope.metrics.collector import registry_for

        snapshot = snapshot_from_recording(data.summary, data.recording)
        out.write(generate_latest(registry_for(lambda: snapshot)).decode("utf-8"))
