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

import numpy as np

from memscope.recording import SAMPLE_COLUMNS
from memscope.report._base import ReportData

__all__ = ["CSV_COLUMNS", "CsvReporter", "spreadsheet_safe"]

_EXTRA = tuple(c for c in SAMPLE_COLUMNS if c not in ("rss", "pss", "uss", "swap"))
CSV_COLUMNS = ("t", "epoch", "process_id", "pid", "ppid", "role", "command",
               "rss", "pss", "uss", "shared", "swap", *_EXTRA)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


class CsvReporter:
    name: ClassVar[str] = "csv"
    suffix: ClassVar[str] = ".csv"

    def render(self, data: ReportData, out: TextIO) -> None:
        rec = data.recording
        started = data.summary.started_at
        procs = {p.id: p for p in rec.processes}
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        cols = rec.columns(SAMPLE_COLUMNS)
        order = np.lexsort((cols.process_id, cols.t))
        shared = cols.values["shared_clean"] + cols.values["shared_dirty"]
        series = [cols.values[c] for c in ("rss", "pss", "uss")]
        series += [shared, cols.values["swap"], *(cols.values[c] for c in _EXTRA)]
        columns = [[None if v != v else int(v) for v in s[order].tolist()] for s in series]
        commands = {pid: spreadsheet_safe(p.command) for pid, p in procs.items()}
        for i, (process_id, t) in enumerate(zip(cols.process_id[order].tolist(),
                                                cols.t[order].tolist(), strict=True)):
            p = procs[process_id]
            writer.writerow((
                f"{t - started:.6f}", f"{t:.6f}", process_id, p.pid, p.ppid, p.role,
                commands[process_id], *("" if c[i] is None else c[i] for c in columns),
            ))
