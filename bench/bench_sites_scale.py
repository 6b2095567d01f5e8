#!/usr/bin/env python3
"""Copied objects to allocation sites at scale: memscope's time per worker, parent slowdown.

    python bench/bench_sites_scale.py [--objects 10000000] [--workers 4] [--split]
                                      [--python PATH] [--duty 1.0] [--budget 200000]
                                      [--pages 2048] [--seconds 2.0] [--block N] [--idle S]

A parent started with memscope's agent (as under `memscope run --trace-sites=4`) preloads
`--objects` ints and forks `--workers` workers that each iterate all of them, copying the
same ~32 bytes per object (`--split`: each worker reads only its own share, so the objects
copied across the workers add up to `--objects`). Its main thread then runs a fixed CPU-bound
block (`--block` iterations of an empty loop, no allocation) over and over, printing when each
started and ended. For each worker in turn, after `--idle` seconds of the parent alone,
memscope reads the worker's copied pages (at most --pages, a coordinated sample beyond),
parses their objects and resolves their sites (cow.sites.heap_sites_stats: lookups shared per
origin, at most --budget new ones per worker, the rest sampled; the lookups get what the read
and parse left of --seconds, as in a run: sites.resolve_seconds). Reported per worker: read,
parse and lookup wall time, lookups made / shared, the top site and its share, and the
parent's mean block time while it answered against the idle window just before; at the end
the parent's slowdown over all workers (mean block time while resolving / mean over the
interleaved idle windows), as measured and net of the time the parent's thread waited for a
CPU (run-queue wait from /proc/thread-self/schedstat: the machine's other load, memscope's
own CPU included; a wait for the GIL, what answering memscope costs the parent, remains), and
the CPU time of the parent's agent thread over the lookup time: the share of the parent's GIL
its agent took (load-independent; the main thread then did its work in the rest, a slowdown of
share / (1 - share)).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from memscope.cow import sites as sites_mod  # noqa: E402
from memscope.cow.copied_sites import copied_page_sample, heap_in_pages  # noqa: E402
from memscope.inject import agent_env, make_run_dir, remove_run_dir, wait_for_agent  # noqa: E402
from memscope.procfs import ProcFS  # noqa: E402

TARGET = r"""
import itertools, os, sys, time
n, workers, split, block = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
data = list(range(10**9, 10**9 + n))  # SITE:preload
pids = []
for w in range(workers):
    pid = os.fork()
    if pid == 0:
        lo, hi = (w * n // workers, (w + 1) * n // workers) if split else (0, n)
        for i in range(lo, hi):
            data[i]
        print("worker", os.getpid(), flush=True)
        time.sleep(3600)
        os._exit(0)
    pids.append(pid)
def waited():  # seconds this thread was runnable but not running (other processes' CPU)
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) / 1e9
while True:  # the parent's own work, a fixed CPU-bound block (no allocation) timed over and
    w0, t0 = waited(), time.perf_counter()  # over: its time shows what answering costs it
    for _ in itertools.repeat(None, block):
        pass
    t1, w1 = time.perf_counter(), waited()
    print("block", t0, t1, w1 - w0, flush=True)
"""


Block = tuple[float, float, float]  # the parent's block: start, end, run-queue wait (s)


def _mean_in(blocks: list[Block], windows: list[tuple[float, float]], net: bool = False) -> float:
    """Mean time of the parent's blocks that ran wholly inside one of the windows (a mean,
    not a median: a block either runs through or waits whole GIL switch intervals); `net`:
    less the time the parent's thread waited for a CPU (the machine's other load; the GIL
    waits, the cost of answering memscope, remain)."""
    inside = [b - a - (w if net else 0.0) for a, b, w in blocks
              if any(lo <= a and b <= hi for lo, hi in windows)]
    return statistics.fmean(inside) if inside else float("nan")


def _agent_cpu(pid: int) -> float:
    """CPU seconds run so far by the parent's threads other than its main thread (its agent:
    a lookup holds the parent's GIL, so this is the time taken from the main thread, whatever
    else loads the machine)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        if int(tid) != pid:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    return total / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--duty", type=float, default=sites_mod.AGENT_DUTY)
    parser.add_argument("--budget", type=int, default=sites_mod.LOOKUP_BUDGET)
    parser.add_argument("--pages", type=int, default=sites_mod.PAGE_BUDGET,
                        help="copied pages parsed per worker (0: all; beyond: a sample)")
    parser.add_argument("--seconds", type=float, default=sites_mod.SITES_S,
                        help="memscope wall time per worker: read + parse + lookups (as the"
                        " run's sites jobs: sites.resolve_seconds)")
    parser.add_argument("--split", action="store_true",
                        help="each worker copies its own 1/WORKERS of the objects")
    parser.add_argument("--block", type=int, default=1_500_000,
                        help="iterations of the parent's timed CPU-bound block")
    parser.add_argument("--idle", type=float, default=1.0,
                        help="seconds the parent runs alone before each worker and at the end")
    args = parser.parse_args()
    sites_mod.AGENT_DUTY, sites_mod.LOOKUP_BUDGET = args.duty, args.budget
    sites_mod.SITES_S = args.seconds
    run_dir = make_run_dir()
    env = agent_env({"PATH": "/usr/bin:/bin"}, run_dir, 4)
    t_start = time.perf_counter()
    proc = subprocess.Popen([args.python, "-c", TARGET, str(args.objects), str(args.workers),
                             "1" if args.split else "0", str(args.block)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    workers: list[int] = []
    blocks: list[Block] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, *rest = line.split()
            if kind == "worker":
                workers.append(int(rest[0]))
                if len(workers) == args.workers:
                    ready.set()
            elif kind == "block":
                blocks.append((float(rest[0]), float(rest[1]), float(rest[2])))

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(3600):
            raise SystemExit("workers did not start")
        print(f"{args.objects:,} objects, {args.workers} workers"
              f"{' (split)' if args.split else ''}, preload+fork+copy "
              f"{time.perf_counter() - t_start:.1f} s; per worker {args.seconds:.1f} s, at most "
              f"{args.budget:,} lookups and {args.pages:,} pages; agent duty {args.duty}; "
              f"load average {os.getloadavg()[0]:.1f}")
        wait_for_agent(run_dir, proc.pid, 30.0)
        # After the fork the parent's first writes copy pages (tracemalloc's tables): its
        # blocks slow down, then settle. Measure after that; idle windows interleave.
        time.sleep(3.0)
        fs = ProcFS()
        idle: list[tuple[float, float]] = []
        busy: list[tuple[float, float]] = []  # the lookups (the parent answers)
        jobs: list[tuple[float, float]] = []  # read + parse + lookups
        agent_cpu: list[float] = []  # per worker: the parent's agent thread's CPU seconds
        print("worker | pages parsed | blocks | read | parse | lookups | total | looked up |"
              " shared | top site (share) | sampled bytes | parent block idle / resolving |"
              " agent CPU / lookup time")
        for pid in workers:
            t_idle = time.perf_counter()
            time.sleep(args.idle)
            idle.append((t_idle, time.perf_counter()))
            t0 = time.perf_counter()
            copied, pages, ok, rate = copied_page_sample(pid, proc.pid, fs, args.pages)
            tr = time.perf_counter()
            heap = heap_in_pages(proc.pid, copied, pages, ok, fs)
            t1, cpu0 = time.perf_counter(), _agent_cpu(proc.pid)
            found, stats = sites_mod.heap_sites_stats(
                run_dir, pid, heap, copied, top=3, page_rate=rate,
                seconds=sites_mod.resolve_seconds(t1 - t0))
            t2, cpu1 = time.perf_counter(), _agent_cpu(proc.pid)
            agent_cpu.append(cpu1 - cpu0)
            busy.append((t1, t2))
            jobs.append((t0, t2))
            total = sum(s.bytes for s in found) or 1
            top = found[0]
            print(f"{pid} | {len(copied) * 4096 / 2**20:.0f} MiB ({rate:.0%}) | {stats.blocks:,} | "
                  f"{tr - t0:.2f} s | {t1 - tr:.2f} s | {t2 - t1:.2f} s | {t2 - t0:.2f} s | "
                  f"{stats.looked_up:,} | {stats.cached:,} | "
                  f"{top.site.rsplit('/', 1)[-1]} ({top.bytes / total:.0%} of top 3, "
                  f"±{top.ci_bytes / 2**20:.1f} MiB) | {stats.sampled_bytes / 2**20:.0f} MiB | "
                  f"{_mean_in(blocks, idle[-1:]) * 1e3:.1f} / "
                  f"{_mean_in(blocks, busy[-1:]) * 1e3:.1f} ms (net of CPU waits "
                  f"{_mean_in(blocks, idle[-1:], True) * 1e3:.1f} / "
                  f"{_mean_in(blocks, busy[-1:], True) * 1e3:.1f} ms) | "
                  f"{agent_cpu[-1] / (t2 - t1):.0%}", flush=True)
        t_idle = time.perf_counter()
        time.sleep(args.idle)
        idle.append((t_idle, time.perf_counter()))
        time.sleep(0.2)  # the last blocks' lines
        for net in (False, True):
            base = _mean_in(blocks, idle, net)
            for name, windows in (("resolving", busy), ("read + parse + resolving", jobs)):
                load = _mean_in(blocks, windows, net)
                print(f"parent block ({args.block:,} iterations"
                      f"{', net of its CPU waits' if net else ''}): {base * 1e3:.1f} ms idle "
                      f"(mean over {len(idle)} interleaved windows), {load * 1e3:.1f} ms while "
                      f"{name}: {load / base - 1:+.0%}")
        share = sum(agent_cpu) / sum(hi - lo for lo, hi in busy)
        print(f"the parent's agent ran {share:.0%} of the lookup time (holding the parent's"
              f" GIL: the main thread's work slowed by at most {share / (1 - share):.0%} from it)")
        print(f"load average {os.getloadavg()[0]:.1f}")
    finally:
        proc.kill()
        proc.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        remove_run_dir(run_dir)


if __name__ == "__main__":
    main()
