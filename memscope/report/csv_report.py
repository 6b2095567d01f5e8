"""CSV export: long format, one row per process per sample, for spreadsheets and pandas.

Columns: t (seconds since the recording started), epoch, process_id (unique per process,
unlike pid), pid, ppid, role, command, then the memory columns in bytes. Rollup columns (pss,
uss, shared, swap, ...) are empty on counter-only ticks, where only rss and rss_shared were
read. A command starting with = + - @ (or a tab/CR) is prefixed with ' so a spreadsheet shows
it as text instead of evaluating it as a formula: command lines are controlled by the target.
"""

from __future__ import annotations

import csv
from typing import ClassVar, TextIO

from memscope.recording import SAMPLE_COLUMNS
from memscope.report._base import ReportData, register

__all__ = ["CSV_COLUMNS", "CsvReporter", "spreadsheet_safe"]

_EXTRA = tuple(c for c in SAMPLE_COLUMNS if c not in ("rss", "pss", "uss", "swap"))
CSV_COLUMNS = ("t", "epoch", "process_id", "pid", "ppid", "role", "command",
               "rss", "pss", "uss", "shared", "swap", *_EXTRA)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


@register
class CsvReporter:
    name: ClassVar[str] = "csv"
    suffix: ClassVar[str] = ".csv"

    def render(self, data: ReportData, out: TextIO) -> None:
        rec = data.recording
        started = data.summary.started_at
        procs = {p.id: p for p in rec.processes}
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        cols = ", ".join(("rss", "pss", "uss", "shared_clean + shared_dirty", "swap", *_EXTRA))
        cursor = rec.conn.execute(
            f"SELECT process_id, t, {cols} FROM samples ORDER BY t, process_id"
        )
        commands = {pid: spreadsheet_safe(p.command) for pid, p in procs.items()}
        for process_id, t, *values in cursor:
            p = procs[process_id]
            writer.writerow((
                f"{t - started:.6f}", f"{t:.6f}", process_id, p.pid, p.ppid, p.role,
                commands[process_id], *("" if v is None else v for v in values),
            ))
