"""Cost of the Prometheus exporter: the per-tick hook and one scrape, by tree size.

A parent touches --mib MiB and forks W idle workers. A Sampler with the MetricsFeed hook ticks
--ticks times; the hook's CPU time is measured on its own (process_time around the call), and
beside it the whole tick's CPU. Then the registry is scraped (prometheus_client's
generate_latest on the published snapshot) --scrapes times. Reported: median per tick / per
scrape, and the exposition size.
Run: python bench/bench_metrics.py [--workers 8 64 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from _tree import spawn_tree
from prometheus_client.exposition import generate_latest

from memscope.metrics import MetricsFeed, SnapshotBox, registry_for
from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter
from memscope.sampler import Sampler, TickContext, on_tick
from memscope.tree import ProcessTree


class Timed:
    def __init__(self, feed: MetricsFeed) -> None:
        self.feed = feed
        self.cpu: list[float] = []

    def __call__(self, ctx: TickContext) -> None:
        c0 = time.process_time()
        self.feed(ctx)
        self.cpu.append(time.process_time() - c0)


def bench(workers: int, mib: int, ticks: int, scrapes: int) -> None:
    proc, _ = spawn_tree(mib, workers)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            box = SnapshotBox()
            hook = Timed(MetricsFeed(box))
            procfs = ProcFS()
            writer = RecordingWriter(os.path.join(tmp, "b.memscope"), {})
            sampler = Sampler(procfs, ProcessTree(procfs, proc.pid, exclude={os.getpid()}),
                              writer, hooks=[on_tick(hook)])
            tick_cpu = []
            for _ in range(ticks):
                c0 = time.process_time()
                sampler.tick()
                tick_cpu.append(time.process_time() - c0)
            writer.close()
            registry = registry_for(box.get)
            scrape_s = []
            for _ in range(scrapes):
                t0 = time.perf_counter()
                body = generate_latest(registry)
                scrape_s.append(time.perf_counter() - t0)
        print(f"{workers + 1:>5} processes: hook {statistics.median(hook.cpu) * 1e3:.3f} ms/tick"
              f" (tick {statistics.median(tick_cpu) * 1e3:.2f} ms),"
              f" scrape {statistics.median(scrape_s) * 1e3:.2f} ms, {len(body)} bytes")
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for workers in args.workers:
        bench(workers, args.mib, args.ticks, args.scrapes)


if __name__ == "__main__":
    main()
