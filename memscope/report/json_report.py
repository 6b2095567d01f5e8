"""JSON report: a versioned document (schema shipped as report/schema/report.schema.json)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, ClassVar, TextIO

from memscope import __version__
from memscope.analysis.summary import Memory, ProcessSummary, Summary
from memscope.outputs import json_text
from memscope.report._base import ReportData

__all__ = ["JSON_SCHEMA_VERSION", "JsonReporter", "load_schema", "to_document"]

JSON_SCHEMA_VERSION = 1


def load_schema() -> dict[str, Any]:
    text = resources.files("memscope.report").joinpath("schema/report.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _memory(m: Memory, keys: tuple[str, ...]) -> dict[str, int | None]:
    return {k: getattr(m, k) for k in keys}


def _process(p: ProcessSummary) -> dict[str, Any]:
    return {
        "pid": p.pid,
        "ppid": p.ppid,
        "cmdline": p.cmdline,
        "role": p.role,
        "python_version": p.python_version,
        "started_at": p.started_at,
        "exited_at": p.exited_at,
        "exit_code": p.exit_code,
        "samples": p.samples,
        "full_samples": p.full_samples,
        "peak": _memory(p.peak, ("rss", "pss", "uss", "swap")),
        "last": _memory(p.last, ("rss", "pss", "uss", "shared", "swap")),
        "uss_growth": p.uss_growth,
        **p.extra,
    }


def to_document(s: Summary) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": JSON_SCHEMA_VERSION,
        "memscope_version": __version__,
        "command": s.command,
        "mode": s.mode,
        "started_at": s.started_at,
        "duration_s": s.duration_s,
        "exit_code": s.exit_code,
        "sampler": {
            "ticks": s.sampler.ticks,
            "mean_interval_s": s.sampler.mean_interval_s,
            "cpu_s": s.sampler.cpu_s,
            "cpu_fraction": s.sampler.cpu_fraction,
            "rollups": s.sampler.rollups,
            "process_cpu_s": s.sampler.process_cpu_s,
            "process_cpu_fraction": s.sampler.process_cpu_fraction,
            "budget": s.sampler.budget,
            "stretched_to_s": s.sampler.stretched_to_s,
        },
        "processes": [_process(p) for p in s.processes],
        "totals": {
            "peak_pss": s.totals.peak_pss,
            "peak_rss": s.totals.peak_rss,
            "peak_pss_at": s.totals.peak_pss_at,
            "peak_rss_at": s.totals.peak_rss_at,
        },
        **s.extra,
        "notes": [n.to_json() for n in s.notes],
    }
    return doc


class JsonReporter:
    name: ClassVar[str] = "json"
    suffix: ClassVar[str] = ".json"

    def render(self, data: ReportData, out: TextIO) -> None:
        out.write(json_text(to_document(data.summary), indent=2))
        out.write("\n")
