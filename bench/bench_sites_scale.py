#!/usr/bin/env python3
"""Copied objects to allocation sites at scale: memscope's time per worker, parent slowdown.

    python bench/bench_sites_scale.py [--objects 10000000] [--workers 4] [--python PATH]
                                      [--duty 1.0] [--budget 200000]

A parent started with memscope's agent (as under `memscope run --trace-sites=4`) preloads
`--objects` ints and forks `--workers` workers that each iterate all of them, copying the
same ~32 bytes per object (`--split`: each worker reads only its own share, so the objects
copied across the workers add up to `--objects`). Its main thread then counts loop iterations and prints its rate
every 0.2 s. For each worker in turn, memscope parses the worker's copied pages
(cow.copied_sites.copied_heap) and resolves their sites (cow.sites.heap_sites_stats:
lookups shared per origin, at most --budget new ones per worker, the rest sampled).
Reported per worker: parse and resolution wall time, lookups made / shared, the top site
and its share; and the parent's loop rate while memscope resolves, against its rate before.
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
import os, sys, time
n, workers, split = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
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
count, t0 = 0, time.perf_counter()
while True:  # the parent's own work: its rate shows what answering costs it
    count += 1
    if count % 20000 == 0:
        now = time.perf_counter()
        if now - t0 >= 0.2:
            print("rate", now, count / (now - t0), flush=True)
            count, t0 = 0, now
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--duty", type=float, default=sites_mod.AGENT_DUTY)
    parser.add_argument("--budget", type=int, default=sites_mod.LOOKUP_BUDGET)
    parser.add_argument("--pages", type=int, default=sites_mod.PAGE_BUDGET,
                        help="copied pages parsed per worker (0: all; beyond: a sample)")
    parser.add_argument("--split", action="store_true",
                        help="each worker copies its own 1/WORKERS of the objects")
    args = parser.parse_args()
    sites_mod.AGENT_DUTY, sites_mod.LOOKUP_BUDGET = args.duty, args.budget
    run_dir = make_run_dir()
    env = agent_env({"PATH": "/usr/bin:/bin"}, run_dir, 4)
    t_start = time.perf_counter()
    proc = subprocess.Popen([args.python, "-c", TARGET, str(args.objects), str(args.workers),
                             "1" if args.split else "0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    workers: list[int] = []
    rates: list[tuple[float, float]] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            kind, *rest = line.split()
            if kind == "worker":
                workers.append(int(rest[0]))
                if len(workers) == args.workers:
                    ready.set()
            elif kind == "rate":
                rates.append((float(rest[0]), float(rest[1])))

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(3600):
            raise SystemExit("workers did not start")
        print(f"{args.objects:,} objects, {args.workers} workers, preload+fork+copy "
              f"{time.perf_counter() - t_start:.1f} s; budget {args.budget:,} lookups/worker, "
              f"agent duty {args.duty}")
        wait_for_agent(run_dir, proc.pid, 30.0)
        time.sleep(2.0)  # the parent's idle rate
        idle_end = time.perf_counter()
        fs = ProcFS()
        windows: list[tuple[float, float]] = []
        print("worker | pages parsed | blocks | read | parse | resolve | lookups | shared |"
              " top site (share) | sampled bytes")
        for pid in workers:
            t0 = time.perf_counter()
            copied, pages, ok, rate = copied_page_sample(pid, proc.pid, fs, args.pages)
            tr = time.perf_counter()
            heap = heap_in_pages(proc.pid, copied, pages, ok, fs)
            t1 = time.perf_counter()
            found, stats = sites_mod.heap_sites_stats(run_dir, pid, heap, copied, top=3,
                                                      page_rate=rate)
            t2 = time.perf_counter()
            windows.append((t1, t2))
            total = sum(s.bytes for s in found) or 1
            top = found[0]
            print(f"{pid} | {len(copied) * 4096 / 2**20:.0f} MiB ({rate:.0%}) | {stats.blocks:,} | "
                  f"{tr - t0:.2f} s | {t1 - tr:.2f} s | {t2 - t1:.2f} s | {stats.looked_up:,} | {stats.cached:,} | "
                  f"{top.site.rsplit('/', 1)[-1]} ({top.bytes / total:.0%} of top 3, "
                  f"±{top.ci_bytes / 2**20:.1f} MiB) | {stats.sampled_bytes / 2**20:.0f} MiB",
                  flush=True)
        time.sleep(0.5)
        idle = [r for t, r in rates if idle_end - 2.0 <= t < idle_end]
        busy = [r for t, r in rates if any(lo <= t <= hi for lo, hi in windows)]
        if idle and busy:
            base, load = statistics.median(idle), statistics.median(busy)
            print(f"parent loop rate: {base:,.0f}/s idle, {load:,.0f}/s while resolving "
                  f"({1 - load / base:.0%} slower; {len(busy)} windows of 0.2 s)")
    finally:
        proc.kill()
        proc.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        remove_run_dir(run_dir)


if __name__ == "__main__":
    main()
