#!/usr/bin/env python3
"""HTML report at scale: 200 processes x 10,000 samples; file size and render time in Chromium.

Synthesizes a recording of that size with RecordingWriter (every sample a full rollup, the
worst case for the file: workers that copy part of the preloaded heap, one that leaks, noise
and spikes), renders it with `memscope report --format html`, then loads it in Debian's
Chromium through Playwright and measures the time from navigation until the report's charts
are drawn (`body[data-ready]`, set in the frame after every chart was created).

    python bench/bench_html.py [--processes 200] [--samples 10000] [--runs 3] [--no-browser]

Before the browser part it times `memscope report --format text|json|html` on the same
recording, each in its own process (wall time and peak RSS from wait4), with the load average:
the goal is < 3 s and < 250 MB for each format.

Needs: apt-get install chromium; pip install -e '.[test]'.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from memscope.recording import SAMPLE_COLUMNS, RecordingWriter

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MiB = 1024 * 1024


def synthesize(path: str, processes: int, samples: int, interval: float = 0.2) -> None:
    rng = np.random.default_rng(7)
    t0 = 1_700_000_000.0
    writer = RecordingWriter(path, {"started_at": t0, "interval_s": interval, "mode": "run",
                                    "command": ["python", "app.py", "--workers",
                                                str(processes - 1)]})
    ids = [writer.add_process(pid=1000, start_ticks=1, ppid=1, parent_id=None, role="root",
                              cmdline=["python", "app.py"], exe="/usr/bin/python3.11",
                              python_version="3.11", started_at=t0)]
    for i in range(1, processes):
        ids.append(writer.add_process(
            pid=1000 + i, start_ticks=2 + i, ppid=1000, parent_id=ids[0], role="worker",
            cmdline=["python", "app.py", f"--worker={i}"], exe="/usr/bin/python3.11",
            python_version="3.11", started_at=t0 + 0.2))
    t = t0 + np.arange(samples) * interval
    cols = {c: i for i, c in enumerate(SAMPLE_COLUMNS)}
    for n, pid in enumerate(ids):
        shared = 300 * MiB - (np.minimum(np.arange(samples) / samples * 3, 1) * (n % 7) * 20 * MiB)
        private = 40 * MiB + (300 * MiB - shared) + rng.normal(0, 2 * MiB, samples).cumsum() / 30
        if n == 5:
            private += np.arange(samples) * 4096  # a leak: 4 KiB per sample
        spikes = rng.random(samples) < 0.001
        private[spikes] += 100 * MiB
        private = np.abs(private)
        values = np.zeros((samples, len(SAMPLE_COLUMNS)), dtype=np.int64)
        values[:, cols["rss"]] = private + shared
        values[:, cols["pss"]] = private + shared / processes
        values[:, cols["uss"]] = private
        values[:, cols["shared_clean"]] = shared * 0.2
        values[:, cols["shared_dirty"]] = shared * 0.8
        values[:, cols["private_dirty"]] = private
        values[:, cols["anonymous"]] = private + shared * 0.8
        values[:, cols["rss_shared"]] = shared * 0.2
        writer.add_samples((pid, float(tt), *row) for tt, row in zip(t, values.tolist(),
                                                                      strict=True))
        writer.flush()
    for tt in t:
        writer.add_tick(float(tt), 0.001, 0.001, processes, processes)
    writer.set_meta(ended_at=float(t[-1]), exit_code=0)
    writer.close()


def build_times(rec: str, tmp: str, formats: list[str]) -> dict[str, tuple[float, float, float]]:
    """{format: (seconds, peak RSS in MB, CPU seconds)} of `memscope report`, each in a fresh
    process. CPU seconds (user + system) are what a loaded machine does not inflate."""
    memscope = os.path.join(os.path.dirname(sys.executable), "memscope")
    out: dict[str, tuple[float, float, float]] = {}
    for fmt in formats:
        start = time.perf_counter()
        proc = subprocess.Popen([memscope, "report", rec, "--format", fmt,
                                 "-o", os.path.join(tmp, f"big.{fmt}")])
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"memscope report --format {fmt} exited {proc.returncode}")
        out[fmt] = (time.perf_counter() - start, usage.ru_maxrss / 1024,
                    usage.ru_utime + usage.ru_stime)
    return out


def render_times(html: Path, runs: int) -> tuple[list[float], list[float]]:
    """(navigation to charts drawn, then drawing every per-process chart at once) per run."""
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    all_cards: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(runs):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.on("console", lambda m, errors=errors: errors.append(m.text)
                    if m.type == "error" else None)
            start = time.perf_counter()
            page.goto(html.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            times.append(time.perf_counter() - start)
            all_cards.append(page.evaluate(
                "() => { const t = performance.now(); window.memscope.drawAll();"
                " return (performance.now() - t) / 1000; }"))
            if errors:
                raise SystemExit(f"console errors: {errors}")
            page.close()
        browser.close()
    return times, all_cards


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=200)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", help="write the HTML here as well")
    parser.add_argument("--no-browser", action="store_true", help="only time the builds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rec = os.path.join(tmp, "big.memscope")
        start = time.perf_counter()
        synthesize(rec, args.processes, args.samples)
        synth_s = time.perf_counter() - start
        load = os.getloadavg()
        builds = build_times(rec, tmp, ["text", "json", "html"])
        rec_size = os.path.getsize(rec)
        size = (Path(tmp) / "big.html").stat().st_size
        if not args.no_browser:
            times, all_cards = render_times(Path(tmp) / "big.html", args.runs)
        if args.keep:
            Path(args.keep).write_bytes((Path(tmp) / "big.html").read_bytes())
    samples = args.processes * args.samples
    print(f"recording: {args.processes} processes x {args.samples} samples"
          f" (synthesized in {synth_s:.1f}s, {rec_size / 1e6:.1f} MB,"
          f" {rec_size / samples:.1f} B per process-sample)")
    print(f"load average before the builds: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
          f" on {os.cpu_count()} cores")
    for fmt, (secs, rss, cpu) in builds.items():
        print(f"memscope report --format {fmt}: {secs:.2f}s wall, {cpu:.2f} CPU-s,"
              f" peak RSS {rss:.0f} MB")
    print(f"file size: {size / 1e6:.2f} MB ({size} bytes)")
    builds_ok = all(secs < 3.0 and rss < 250 for secs, rss, _ in builds.values())
    if args.no_browser:
        print("PASS" if builds_ok else "FAIL: a build over budget (3 s, 250 MB)")
        return 0 if builds_ok else 1
    print(f"Chromium load to charts drawn: median {statistics.median(times):.2f}s,"
          f" max {max(times):.2f}s over {len(times)} runs")
    print(f"then all {args.processes} per-process charts forced at once (no scrolling):"
          f" median {statistics.median(all_cards):.2f}s")
    ok = builds_ok and size < 10_000_000 and max(times) < 3.0
    print("PASS" if ok else "FAIL: over budget (builds 3 s / 250 MB, file 10 MB, load 3 s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
