"""Cost of one tree sample: memscope vs the kernel floor, psutil and smem, side by side.

A parent touches --mib MiB of anonymous memory and forks W idle workers, so every process
maps (and the kernel must walk) that much. For each tree size it times, per tree sample:

  floor     open+read+close of every process's smaps_rollup (no parsing): the kernel's cost
  memscope  one Sampler tick at full fidelity (every process gets a rollup), with discovery,
            statm counters, parsing and the SQLite write
  psutil    Process.memory_full_info() for every process
  smem      one `smem -c "pid uss pss"` run (a new process each time, as smem is used)

and then runs the default sampler (5 % budget, 0.2 s ticks) for --soak seconds and reports its
CPU use as a fraction of one core. Run: python bench/bench_sampler.py [--workers 8 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

import psutil
from _tree import spawn_tree

from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter
from memscope.sampler import Sampler
from memscope.tree import ProcessTree


def interleaved(methods: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of each method, run in rotation so drift hits all alike."""
    walls: dict[str, list[float]] = {name: [] for name in methods}
    cpus: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeat):
        for name, fn in methods.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - w0)
            cpus[name].append(time.process_time() - c0)
    return {n: (statistics.median(walls[n]), statistics.median(cpus[n])) for n in methods}


def floor(pids: list[int]) -> None:
    for pid in pids:
        fd = os.open(f"/proc/{pid}/smaps_rollup", os.O_RDONLY)
        os.read(fd, 8192)
        os.close(fd)


def bench_tree(mib: int, workers: int, repeat: int, soak: float) -> dict[str, float]:
    proc, pids = spawn_tree(mib, workers)
    tmp = tempfile.mkdtemp()
    try:
        procfs = ProcFS()
        writer = RecordingWriter(os.path.join(tmp, "bench.memscope"), {"mode": "bench"})
        sampler = Sampler(procfs, ProcessTree(procfs, proc.pid), writer, budget=1e9)
        sampler.tick()  # births
        procs = [psutil.Process(p) for p in pids]
        results = interleaved({
            "floor": lambda: floor(pids),
            "memscope": sampler.tick,
            "psutil": lambda: [p.memory_full_info() for p in procs],
        }, repeat)
        if shutil.which("smem"):
            results.update(interleaved({"smem": lambda: subprocess.run(
                ["smem", "-c", "pid uss pss"], capture_output=True, check=True)}, max(3, repeat // 10)))
        writer.close()

        # Default mode: budgeted sampler at 0.2 s for `soak` seconds.
        writer = RecordingWriter(os.path.join(tmp, "soak.memscope"), {"mode": "bench"})
        soak_sampler = Sampler(procfs, ProcessTree(procfs, proc.pid), writer)
        c_birth = time.process_time()
        soak_sampler.tick()  # births: every process gets its first rollup at once
        birth_cpu = time.process_time() - c_birth
        end = time.monotonic() + soak
        c0 = time.process_time()
        w0 = time.monotonic()
        soak_sampler.run(0.2, lambda: time.monotonic() >= end)
        cpu_fraction = (time.process_time() - c0) / (time.monotonic() - w0)
        full_per_s = sum(s.rollups for s in soak_sampler._state.values()) / soak
        writer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(tmp)
    out = {f"{k}_wall": v[0] for k, v in results.items()}
    out.update({f"{k}_cpu": v[1] for k, v in results.items()})
    out["soak_cpu_fraction"] = cpu_fraction
    out["birth_cpu"] = birth_cpu
    out["soak_rollups_per_s"] = full_per_s
    return out


def memory_flatness(ticks: int) -> tuple[int, int]:
    """memscope's own RSS after 100 ticks and after `ticks` ticks (8-worker tree, no sleep)."""
    proc, _ = spawn_tree(20, 8)
    tmp = tempfile.mkdtemp()
    me = psutil.Process()
    try:
        procfs = ProcFS()
        writer = RecordingWriter(os.path.join(tmp, "long.memscope"), {"mode": "bench"})
        sampler = Sampler(procfs, ProcessTree(procfs, proc.pid), writer, budget=1e9)
        early = 0
        for i in range(ticks):
            sampler.tick()
            if i == 99:
                sampler.flush()
                early = me.memory_info().rss
        sampler.flush()
        late = me.memory_info().rss
        writer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(tmp)
    return early, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--mib", type=int, default=100, help="MiB mapped by every process")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--soak", type=float, default=20.0)
    parser.add_argument("--long-ticks", type=int, default=5000)
    args = parser.parse_args()
    print(f"# tree sample cost, {args.mib} MiB per process, median of {args.repeat}")
    print("| workers | floor | memscope | psutil | smem | memscope/floor | psutil/floor |"
          " smem/floor | first tick (births) | default mode, steady CPU (1 core) | full rollups/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for w in args.workers:
        r = bench_tree(args.mib, w, args.repeat, args.soak)
        fl = r["floor_wall"]
        smem = r.get("smem_wall")
        print(
            f"| {w} | {fl * 1e3:.2f} ms | {r['memscope_wall'] * 1e3:.2f} ms |"
            f" {r['psutil_wall'] * 1e3:.2f} ms | {'-' if smem is None else f'{smem * 1e3:.0f} ms'} |"
            f" {r['memscope_wall'] / fl:.2f}x | {r['psutil_wall'] / fl:.2f}x |"
            f" {'-' if smem is None else f'{smem / fl:.1f}x'} | {r['birth_cpu'] * 1e3:.0f} ms |"
            f" {r['soak_cpu_fraction']:.1%} |"
            f" {r['soak_rollups_per_s']:.0f} |",
            flush=True,
        )
    early, late = memory_flatness(args.long_ticks)
    print(f"\nmemscope's own RSS, 9-process tree, full rollups every tick: {early / 2**20:.1f} MiB"
          f" after 100 ticks, {late / 2**20:.1f} MiB after {args.long_ticks} ticks"
          f" ({args.long_ticks * 9} samples streamed to the file)")


if __name__ == "__main__":
    main()
