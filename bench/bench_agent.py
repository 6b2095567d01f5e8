#!/usr/bin/env python3
"""Steady-state cost of `--trace-sites` in forked workers, per CPython version.

A parent preloads PRELOAD objects and forks one worker that times an allocation-heavy loop
(strings, dicts and tuples; REPS timed runs after one warm-up; median). Modes:

- baseline:       no memscope agent;
- trace-sites:    `memscope run --trace-sites=16` (bootstrap env): the parent traces, the
                  worker detaches from tracing at fork (allocators restored, flag cleared);
- trace-workers:  `--trace-sites=16 --trace-workers`: the worker keeps tracing (leak sites);
- naive-stop:     PYTHONTRACEMALLOC=16 in the parent and tracemalloc.stop() in the child (the
                  obvious alternative): its one-off cost at fork and the pages it dirties.

Usage: python bench/bench_agent.py [--versions 3.8,3.11,...] [--preload 500000] [--reps 5]
Prints a markdown table (ratios to baseline).

`--resolve N` instead times COW-to-sites for a worker that copied N ints (tests/agent/
site_target.py): the copied-heap parse on memscope's side and the address resolution by the
parent's agent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from memscope.inject import agent_env, make_run_dir, remove_run_dir

WORKER = r'''
import json, os, sys, time, tracemalloc
PRELOAD = [(i, str(i)) for i in range(int(sys.argv[1]))]
REPS = int(sys.argv[2])
NAIVE = sys.argv[3] == "naive"

def work():
    for _ in range(3):
        l = [str(i) + "x" for i in range(300000)]
        d = {i: (i, i) for i in range(100000)}
        del l, d

def private_dirty():
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1]) * 1024
    return 0

r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    before = private_dirty()
    t0 = time.perf_counter()
    if NAIVE:
        tracemalloc.stop()
    stop_s = time.perf_counter() - t0
    dirtied = private_dirty() - before
    work()
    times = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    os.write(w, json.dumps({"times": times, "tracing": tracemalloc.is_tracing(),
                            "stop_s": stop_s, "dirtied": dirtied}).encode())
    os._exit(0)
os.close(w)
data = b""
while True:
    chunk = os.read(r, 65536)
    if not chunk:
        break
    data += chunk
os.waitpid(pid, 0)
print(data.decode())
'''

VERSIONS = {
    "3.8": "3.8.18", "3.9": "3.9.18", "3.10": "3.10.13",
    "3.11": "3.11.7", "3.12": "3.12.1", "3.13": "3.13.0",
}


def run_mode(
    python: str, mode: str, preload: int, reps: int, script: str, mmap_threshold: int = 0
) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MEMSCOPE"))}
    if mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    run_dir = make_run_dir()
    try:
        if mode == "trace-sites":
            env = agent_env(env, run_dir, 16)
        elif mode == "trace-workers":
            env = agent_env(env, run_dir, 16, trace_workers=True)
        elif mode == "naive-stop":
            env["PYTHONTRACEMALLOC"] = "16"
        out = subprocess.run(
            [python, script, str(preload), str(reps), "naive" if mode == "naive-stop" else "-"],
            env=env, capture_output=True, text=True, timeout=600, check=True,
        )
        return dict(json.loads(out.stdout))
    finally:
        remove_run_dir(run_dir)


def bench_resolve(versions: list[str], n: int) -> None:
    import time

    import numpy as np

    from memscope.cow.copied_sites import copied_heap
    from memscope.cow.sites import resolve_addresses
    from memscope.inject import AgentClient, wait_for_agent

    target = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tests", "agent",
                          "site_target.py")
    print(f"worker copied the pages of {n} ints\n")
    print("| CPython | copied MiB | blocks | parse copied heap s | resolve s | addresses/s |")
    print("|---|---|---|---|---|---|")
    for v in versions:
        run_dir = make_run_dir()
        python = f"/root/.pyenv/versions/{VERSIONS[v]}/bin/python3"
        proc = subprocess.Popen([python, target, str(n)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True,
                                env=agent_env({"PATH": "/usr/bin:/bin"}, run_dir, 4))
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            worker = int(json.loads(proc.stdout.readline())["worker"])
            proc.stdout.readline()
            wait_for_agent(run_dir, worker, 10)
            t0 = time.perf_counter()
            heap, copied = copied_heap(worker, proc.pid)
            t1 = time.perf_counter()
            starts = np.unique(heap.block_start)
            with AgentClient.for_pid(run_dir, proc.pid, 60) as c:
                resolve_addresses(c, starts)
            t2 = time.perf_counter()
            print(f"| {v} | {len(copied) * 4096 / 2**20:.1f} | {len(starts)} | {t1 - t0:.2f}"
                  f" | {t2 - t1:.2f} | {len(starts) / (t2 - t1):,.0f} |", flush=True)
        finally:
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait()
            remove_run_dir(run_dir)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", default=",".join(VERSIONS))
    ap.add_argument("--preload", type=int, default=500_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument(
        "--mmap-threshold", type=int, default=0,
        help="set glibc's MALLOC_MMAP_THRESHOLD_ for every mode (fixes the dynamic threshold,"
        " which the traced parent's frees otherwise raise, making large blocks cheaper)",
    )
    ap.add_argument("--resolve", type=int, default=0, metavar="N")
    args = ap.parse_args()
    if args.resolve:
        bench_resolve(args.versions.split(","), args.resolve)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(WORKER)
        script = f.name
    print(f"preload {args.preload} objects in the parent; worker loop median of {args.reps};"
          f" MALLOC_MMAP_THRESHOLD_={args.mmap_threshold or 'glibc default (dynamic)'}\n")
    print("| CPython | baseline s | trace-sites (worker) | trace-workers | naive stop() at fork |")
    print("|---|---|---|---|---|")
    try:
        for v in args.versions.split(","):
            python = f"/root/.pyenv/versions/{VERSIONS[v]}/bin/python3"
            res = {m: run_mode(python, m, args.preload, args.reps, script, args.mmap_threshold)
                   for m in ("baseline", "trace-sites", "trace-workers", "naive-stop")}
            med = {m: statistics.median(r["times"]) for m, r in res.items()}  # type: ignore[arg-type]
            base = med["baseline"]
            naive = res["naive-stop"]
            print(
                f"| {v} | {base:.3f} | {med['trace-sites'] / base:.2f}x"
                f" | {med['trace-workers'] / base:.2f}x"
                f" | {med['naive-stop'] / base:.2f}x loop; stop() {float(naive['stop_s']) * 1e3:.0f} ms,"  # type: ignore[arg-type]
                f" {int(naive['dirtied']) / 2**20:.1f} MiB dirtied |",  # type: ignore[call-overload]
                flush=True,
            )
    finally:
        os.unlink(script)


if __name__ == "__main__":
    main()
