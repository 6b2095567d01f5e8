"""Soak: memscope's own memory over a long default `attach` to a churning forked tree.

    python bench/soak.py --duration 7200 --csv soak.csv
    python bench/soak.py --summary soak.csv            # figures of a (running) CSV

The target is fixtures/churn_master.py: a preloading master with 16 workers that copy and free
memory and are recycled after ~100-150 s each (gunicorn's --max-requests), so PIDs keep coming
and going. memscope runs `attach PID` with default settings (0.2 s ticks, COW scans 'auto')
through bench/_soak_memscope.py, which is `memscope` itself plus, when
MEMSCOPE_SOAK_TRACEMALLOC=DIR is set, tracemalloc snapshots of memscope's heap written to DIR
every MEMSCOPE_SOAK_SNAPSHOT_S seconds (default 300; compare them with
`python bench/_soak_memscope.py --diff DIR`).

Every --sample-every seconds one CSV row: memscope's RSS, PSS and USS (its smaps_rollup), its
CPU seconds and threads, the recording's size, and how many workers the fixture has forked and
recycled so far. The summary drops the first --warmup seconds and reports min, median, p90,
max and the least-squares slope of RSS, and the *floor*: the lowest RSS of each of six equal
windows, with its slope. A COW scan holds its page buffers for a fraction of a second, so
single samples catch scans in flight; memory that is kept shows as a rising floor.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from memscope.procfs import ProcessGone, ProcFS

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(os.path.dirname(HERE), "fixtures", "churn_master.py")
WRAPPER = os.path.join(HERE, "_soak_memscope.py")
MIB = 1024 * 1024
WINDOWS = 6
FIELDS = ["elapsed_s", "rss_mib", "pss_mib", "uss_mib", "cpu_s", "threads", "recording_mib",
          "forked", "recycled"]


@dataclass(frozen=True)
class Summary:
    warmup_s: float
    samples: int
    first_mib: float  # RSS of the first sample after warm-up
    last_mib: float
    min_mib: float
    max_mib: float
    slope_mib_per_h: float  # least squares over the samples after warm-up
    peak_uss_mib: float
    duration_s: float
    forked: int
    recycled: int
    median_mib: float
    p90_mib: float
    floors_mib: tuple[float, ...]  # lowest RSS of each of six equal windows
    floor_slope_mib_per_h: float

    @property
    def spread_mib(self) -> float:
        return self.max_mib - self.min_mib

    def text(self) -> str:
        return (f"after {self.warmup_s:.0f} s warm-up, {self.samples} samples over "
                f"{self.duration_s / 60:.1f} min: RSS {self.first_mib:.1f} -> {self.last_mib:.1f}"
                f" MiB, min {self.min_mib:.1f}, max {self.max_mib:.1f} (spread "
                f"{self.spread_mib:.1f}), median {self.median_mib:.1f}, p90 {self.p90_mib:.1f}, "
                f"slope {self.slope_mib_per_h:+.2f} MiB/h; floor by window "
                f"{' '.join(f'{f:.1f}' for f in self.floors_mib)} MiB, slope "
                f"{self.floor_slope_mib_per_h:+.2f} MiB/h; USS peak {self.peak_uss_mib:.1f} MiB;"
                f" workers forked {self.forked}, recycled {self.recycled}")


def summarize(rows: Sequence[dict[str, float]], warmup_s: float) -> Summary:
    """Figures of the RSS curve after `warmup_s` (raises ValueError with < 2 samples)."""
    steady = [r for r in rows if r["elapsed_s"] >= warmup_s]
    if len(steady) < 2:
        raise ValueError(f"fewer than 2 samples after the {warmup_s:.0f} s warm-up")
    xs = [r["elapsed_s"] for r in steady]
    ys = [r["rss_mib"] for r in steady]
    ordered = sorted(ys)
    span = (xs[-1] - xs[0]) / WINDOWS or 1.0
    windows: list[list[tuple[float, float]]] = [[] for _ in range(WINDOWS)]
    for x, y in zip(xs, ys, strict=True):
        windows[min(int((x - xs[0]) / span), WINDOWS - 1)].append((x, y))
    floors = [min(w, key=lambda p: p[1]) for w in windows if w]
    return Summary(warmup_s, len(steady), ys[0], ys[-1], ordered[0], ordered[-1],
                   _slope(xs, ys) * 3600, max(r["uss_mib"] for r in steady), xs[-1],
                   int(rows[-1]["forked"]), int(rows[-1]["recycled"]),
                   ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.9)],
                   tuple(y for _, y in floors),
                   _slope([x for x, _ in floors], [y for _, y in floors]) * 3600)


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 for fewer than two distinct xs)."""
    if len(xs) < 2:
        return 0.0
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def read_csv(path: str) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


class Fixture:
    """churn_master.py running, with its forked/recycled events counted on a thread."""

    def __init__(self, python: str, workers: int, extra: Sequence[str]) -> None:
        self.proc = subprocess.Popen([python, FIXTURE, "--workers", str(workers), *extra],
                                     stdout=subprocess.PIPE, text=True)
        self.forked = self.recycled = 0
        self._ready = threading.Event()
        self._workers = workers
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(120):
            self.stop()
            raise RuntimeError("churn_master.py did not fork its workers within 120 s")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line).get("event")
            self.forked += event == "forked"
            self.recycled += event == "recycled"
            if self.forked >= self._workers:
                self._ready.set()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _file_mib(path: str) -> float:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)) / MIB


def soak(args: argparse.Namespace) -> list[dict[str, float]]:
    """Run the fixture and memscope for args.duration seconds; write and return the rows."""
    procfs = ProcFS()
    tree = Fixture(args.python, args.workers, args.fixture_args)
    recording = args.recording or os.path.join(tempfile.mkdtemp(prefix="soak-"), "soak.memscope")
    command = [sys.executable, WRAPPER, "attach", str(tree.proc.pid), "-q", "-o", recording,
               "--duration", str(args.duration), *args.memscope_args]
    rows: list[dict[str, float]] = []
    memscope = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    tick = os.sysconf("SC_CLK_TCK")
    try:
        with open(args.csv, "w", newline="") as out:
            writer = csv.DictWriter(out, FIELDS)
            writer.writeheader()
            next_t = started
            while memscope.poll() is None:
                next_t += args.sample_every
                time.sleep(max(0.0, next_t - time.monotonic()))
                try:
                    rollup = procfs.rollup(memscope.pid)
                    stat = procfs.stat(memscope.pid)
                except ProcessGone:
                    break
                if rollup.rss == 0:  # exiting
                    break
                row = {"elapsed_s": round(time.monotonic() - started, 1),
                       "rss_mib": round(rollup.rss / MIB, 2), "pss_mib": round(rollup.pss / MIB, 2),
                       "uss_mib": round(rollup.uss / MIB, 2),
                       "cpu_s": round((stat.utime_ticks + stat.stime_ticks) / tick, 2),
                       "threads": stat.num_threads,
                       "recording_mib": round(_file_mib(recording), 1),
                       "forked": tree.forked, "recycled": tree.recycled}
                rows.append(row)
                writer.writerow(row)
                out.flush()
    finally:
        if memscope.poll() is None:
            memscope.terminate()
        memscope.wait()
        tree.stop()
        if args.recording is None:
            for path in (recording, recording + "-wal", recording + "-shm"):
                if os.path.exists(path):
                    os.remove(path)
            os.rmdir(os.path.dirname(recording))
    if memscope.returncode != 0:
        raise RuntimeError(f"memscope exited {memscope.returncode}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=7200.0,
                        help="seconds of attach (default: 7200)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds left out of the summary (default: 10%% of the duration,"
                             " at least 60)")
    parser.add_argument("--sample-every", type=float, default=10.0,
                        help="seconds between RSS samples (default: 10)")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--python", default=sys.executable, help="interpreter of the fixture")
    parser.add_argument("--csv", default="soak.csv")
    parser.add_argument("--recording", default=None,
                        help="keep the recording here (default: a temporary file, removed)")
    parser.add_argument("--fixture-arg", dest="fixture_args", action="append", default=[],
                        help="extra argument for churn_master.py (repeatable)")
    parser.add_argument("--memscope-arg", dest="memscope_args", action="append", default=[],
                        help="extra argument for memscope attach (repeatable)")
    parser.add_argument("--summary", metavar="CSV", default=None,
                        help="only print the figures of an existing CSV")
    parser.add_argument("--until", type=float, default=float("inf"),
                        help="--summary: leave out the samples after this many seconds (to"
                             " compare a window of a longer run with a shorter run)")
    args = parser.parse_args(argv)
    if args.summary:
        rows = [r for r in read_csv(args.summary) if r["elapsed_s"] <= args.until]
        duration = rows[-1]["elapsed_s"] if rows else 0.0
    else:
        rows = soak(args)
        duration = args.duration
    warmup = args.warmup if args.warmup is not None else max(60.0, duration / 10)
    print(summarize(rows, warmup).text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
