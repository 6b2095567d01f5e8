"""Whole-process CPU of `memscope attach` (default settings) on an idle forked tree.

A parent touches --mib MiB and forks --workers idle workers (bench/_tree.py); `memscope
attach ROOT --duration D` records it with default settings (COW scans on, 5 % budget). The
memscope process's utime+stime (all threads) is read from /proc every second, and reported
as a share of one core: over the first seconds (the startup allowance), over the whole run,
and in steady state (after --settle seconds). The recording's own figure (summary
`process_cpu_fraction`) is printed beside it.

    python bench/bench_attach.py --workers 64 --mib 80 --duration 60
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _tree import spawn_tree

from memscope.analysis.summary import build_summary
from memscope.recording import open_recording

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--mib", type=int, default=80)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds after which the run counts as steady state")
    args = parser.parse_args()
    tree, _pids = spawn_tree(args.mib, args.workers)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "a.memscope")
            cmd = [sys.executable, "-c", "from memscope.cli import main; main()", "attach",
                   str(tree.pid), "-q", "--duration", str(args.duration), "-o", out]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not os.path.exists(out):  # recording starts: the clock starts
                time.sleep(0.01)
            t0, c0 = time.monotonic(), cpu_s(proc.pid)
            points: list[tuple[float, float]] = [(0.0, 0.0)]
            while proc.poll() is None:
                time.sleep(1.0)
                try:
                    points.append((time.monotonic() - t0, cpu_s(proc.pid) - c0))
                except OSError:
                    break
            proc.wait()
            rec = open_recording(out)
            summary = build_summary(rec)
            rec.close()
    finally:
        tree.terminate()
        tree.wait()

    def share(a: float, b: float) -> float:
        inside = [p for p in points if a <= p[0] <= b]
        (ta, ca), (tb, cb) = inside[0], inside[-1]
        return (cb - ca) / (tb - ta) if tb > ta else 0.0

    end = points[-1][0]
    # The recording ends at --duration; after it come the final scans of every worker whose
    # copied bytes or types are not current (never deferred, budget.py): reported apart.
    attached = [p for p in points if p[0] <= args.duration - 2][-1]
    first = [p for p in points if p[0] <= 5.0][-1]
    print(f"attach to {args.workers} idle workers of {args.mib} MiB, {args.duration:g} s:")
    print(f"  first {first[0]:.0f} s: {first[1]:.2f} CPU-s ({share(0, first[0]):.1%} of one core)")
    print(f"  whole run: {share(0, end):.1%} of one core")
    print(f"  steady state ({args.settle:g} s .. {attached[0]:.0f} s):"
          f" {share(args.settle, attached[0]):.1%} of one core")
    print(f"  end of the recording (final scans, exit): {points[-1][1] - attached[1]:.2f} CPU-s"
          f" in {end - attached[0]:.1f} s")
    sm = summary.sampler
    print(f"  recording says: {sm.process_cpu_s:.2f} CPU-s, {sm.process_cpu_fraction:.1%};"
          f" {sm.rollups} rollups over {sm.ticks} ticks (every {sm.mean_interval_s:.3f} s);"
          f" {len(summary.cow.processes) if summary.cow else 0} workers scanned")
    return 0


if __name__ == "__main__":
    sys.exit(main())
