"""Births followed: how many short-lived children a `memscope run` misses, and what it costs.

The target (tests/integration/tree_target.py children N LOG) forks N children, 8 at a time,
each living 10-50 ms and appending its PID to LOG. Each repeat records it with `memscope run`
at the given interval and reports the children missing from the recording, those without an
exit code, the recording's `births_tracked`, the sampler's CPU seconds and the event reader
thread's CPU seconds (meta `events_cpu_s`), and the wall time.

Run: python bench/bench_births.py [--children 500] [--interval 0.2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from memscope.recording import open_recording

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(os.path.dirname(HERE), "tests", "integration", "tree_target.py")


def once(memscope: str, children: int, interval: float, workdir: str) -> dict[str, object]:
    path = os.path.join(workdir, "births.memscope")
    log = os.path.join(workdir, "children.log")
    for stale in (path, log):
        if os.path.exists(stale):
            os.unlink(stale)
    t0 = time.perf_counter()
    subprocess.run([memscope, "run", "-q", "-o", path, "-i", str(interval), "--",
                    sys.executable, TARGET, "children", str(children), log],
                   check=True, capture_output=True)
    wall = time.perf_counter() - t0
    with open(log) as fh:
        truth = {int(line.split()[0]) for line in fh}
    rec = open_recording(path)
    rows = {p.pid: p for p in rec.processes if p.role == "worker"}
    result = {
        "missed": len(truth - set(rows)),
        "no_exit_code": sum(1 for pid in truth if pid in rows and rows[pid].exit_code is None),
        "births_tracked": rec.meta.get("births_tracked", "scan"),
        "sampler_cpu_s": rec.meta.get("sampler_cpu_s"),
        "events_cpu_s": rec.meta.get("events_cpu_s"),
        "wall_s": round(wall, 2),
    }
    rec.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=500)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    memscope = shutil.which("memscope") or os.path.join(os.path.dirname(sys.executable), "memscope")
    with tempfile.TemporaryDirectory() as workdir:
        for i in range(args.repeat):
            print(i + 1, once(memscope, args.children, args.interval, workdir), flush=True)


if __name__ == "__main__":
    main()
