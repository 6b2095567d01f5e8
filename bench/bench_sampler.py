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
import sys
import tempfile
import time
from collections.abc import Callable

import psutil

from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter
from memscope.sampler import Sampler
from memscope.tree import ProcessTree

TREE = """
import os, signal, sys, time
mib, workers = int(sys.argv[1]), int(sys.argv[2])
blob = bytearray(mib * 1024 * 1024)
for i in range(0, len(blob), 4096):
    blob[i] = 1
pids = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
        time.sleep(3600)
        os._exit(0)
    pids.append(pid)
print("ready", flush=True)
signal.signal(signal.SIGTERM, lambda *a: [os.kill(p, 15) for p in pids] and os._exit(0))
time.sleep(3600)
"""


def spawn_tree(mib: int, workers: int) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", TREE, str(mib), str(workers)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    pids = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children()]
    assert len(pids) == workers + 1
    return proc, pids


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
    out["soak_rollups_per_s"] = full_per_s
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--mib", type=int, default=100, help="MiB mapped by every process")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--soak", type=float, default=20.0)
    args = parser.parse_args()
    print(f"# tree sample cost, {args.mib} MiB per process, median of {args.repeat}")
    print("| workers | floor | memscope | psutil | smem | memscope/floor | psutil/floor |"
          " smem/floor | default-mode CPU (1 core) | full rollups/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for w in args.workers:
        r = bench_tree(args.mib, w, args.repeat, args.soak)
        fl = r["floor_wall"]
        smem = r.get("smem_wall")
        print(
            f"| {w} | {fl * 1e3:.2f} ms | {r['memscope_wall'] * 1e3:.2f} ms |"
            f" {r['psutil_wall'] * 1e3:.2f} ms | {'-' if smem is None else f'{smem * 1e3:.0f} ms'} |"
            f" {r['memscope_wall'] / fl:.2f}x | {r['psutil_wall'] / fl:.2f}x |"
            f" {'-' if smem is None else f'{smem / fl:.1f}x'} | {r['soak_cpu_fraction']:.1%} |"
            f" {r['soak_rollups_per_s']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
