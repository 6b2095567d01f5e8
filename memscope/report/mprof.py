"""memory_profiler's .dat format, so `mprof plot` and tools built on it read our recordings.

    CMDLINE <command>              the root's command line, one line
    MEM <MiB> <epoch>              the root process, every sample
    CHLD <pid> <MiB> <epoch>       every other process of the tree, every sample

Values are RSS in MiB (2**20 bytes), as `mprof run --multiprocess` records them, so plots
compare with files users already have; RSS is the one metric sampled at every tick. The true
footprint (PSS/USS) is in the other formats. A PID seen twice (recycled) gets a ".N" suffix
so its two processes stay separate series. memory_profiler's reader splits on spaces and
rejects blank lines, so the command is written on one line with its whitespace collapsed.
"""

from __future__ import annotations

from typing import ClassVar, TextIO

import numpy as np

from memscope.report._base import ReportData
from memscope.roles import MAIN_ROLES

__all__ = ["MIB", "MprofReporter"]

MIB = 1024 * 1024


class MprofReporter:
    name: ClassVar[str] = "mprof"
    suffix: ClassVar[str] = ".dat"

    def render(self, data: ReportData, out: TextIO) -> None:
        rec = data.recording
        roots = [p for p in rec.processes if p.role in MAIN_ROLES]
        root_id = roots[0].id if roots else None
        command = " ".join(data.summary.command) or (roots[0].command if roots else "")
        out.write(f"CMDLINE {' '.join(command.split()) or '?'}\n")
        keys: dict[int, str] = {}
        seen: dict[int, int] = {}
        for p in rec.processes:
            n = seen.get(p.pid, 0)
            seen[p.pid] = n + 1
            keys[p.id] = str(p.pid) if n == 0 else f"{p.pid}.{n}"
        cols = rec.columns(("rss",))
        rss_all = cols.values["rss"]
        ok = ~np.isnan(rss_all)
        pid_all, t_all, rss_ok = cols.process_id[ok], cols.t[ok], rss_all[ok]
        order = np.lexsort((pid_all, pid_all != (root_id if root_id is not None else -1), t_all))
        for process_id, t, rss in zip(pid_all[order].tolist(), t_all[order].tolist(),
                                      rss_ok[order].tolist(), strict=True):
            mib = rss / MIB
            if process_id == root_id:
                out.write(f"MEM {mib:.6f} {t:.4f}\n")
            else:
                out.write(f"CHLD {keys[process_id]} {mib:.6f} {t:.4f}\n")
