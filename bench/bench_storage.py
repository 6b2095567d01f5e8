#!/usr/bin/env python3
"""Recording size: bytes per process-sample of `memscope attach` on a steady 64-worker tree.

Spawns the idle tree of bench/_tree.py (a parent that touched 100 MiB, 64 forked workers),
attaches with the default settings for --duration seconds, and prints the file size divided by
the number of process-samples recorded (every table counts: processes, ticks, COW scans...),
the share of the samples themselves (chunk BLOBs + plain rows), and each table's pages (with
its indexes, SQLite dbstat) per process-sample. The goal (issue 15) is the whole file <= 8 B.
--compare FILE prints the same figures for another recording (e.g. one written by a schema-1
memscope); --read FILE only prints them for FILE (no new recording).

    python bench/bench_storage.py [--workers 64] [--duration 600] [--compare old.memscope]
    python bench/bench_storage.py --read kept.memscope
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from typing import Any

from _tree import spawn_tree

from memscope.recording import SAMPLE_COLUMNS

GOAL = 8.0  # bytes per process-sample, whole file


def table_bytes(conn: sqlite3.Connection) -> dict[str, int]:
    """Bytes of pages per table, its indexes included, largest first (SQLite dbstat)."""
    owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"))
    out: dict[str, int] = {}
    for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
        table = owner.get(name, name)
        out[table] = out.get(table, 0) + size
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def figures(path: str) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    plain = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    chunked, blob = 0, 0
    if "sample_chunks" in tables:
        chunked, blob = conn.execute(
            "SELECT IFNULL(SUM(n), 0), IFNULL(SUM(LENGTH(data)), 0) FROM sample_chunks"
        ).fetchone()
    ticks = conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0]
    pages = table_bytes(conn)
    sample_pages = sum(v for k, v in pages.items() if k.startswith("sample"))
    cow_pages = sum(v for k, v in pages.items() if k.startswith("cow_"))
    scans = conn.execute("SELECT COUNT(*) FROM cow_scans").fetchone()[0] if "cow_scans" in tables else 0
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    size = os.path.getsize(path)
    n = plain + chunked
    # A plain row: 16 columns of up to 8 bytes plus SQLite's record header and index entry.
    return {"schema": version, "size": size, "samples": n, "plain": plain, "ticks": ticks,
            "per_sample": size / n if n else float("nan"),
            "samples_per_sample": sample_pages / n if n else float("nan"),
            "cow_per_sample": cow_pages / n if n else float("nan"), "scans": scans,
            "blob_per_chunked": blob / chunked if chunked else float("nan"), "tables": pages}


def show(label: str, f: dict[str, Any]) -> None:
    print(f"{label}: schema {f['schema']}, {f['size']:,} bytes, {f['samples']:,} process-samples"
          f" ({f['plain']:,} plain rows), {f['ticks']:,} ticks ->"
          f" {f['per_sample']:.2f} B per process-sample in the whole file;"
          f" sample tables (pages) {f['samples_per_sample']:.2f} B, chunk BLOBs alone"
          f" {f['blob_per_chunked']:.2f} B; COW tables ({f['scans']:,} scans)"
          f" {f['cow_per_sample']:.2f} B")
    n = f["samples"] or 1
    print("  per table (pages incl. indexes), B per process-sample: " + ", ".join(
        f"{name} {size / n:.2f}" for name, size in f["tables"].items() if size / n >= 0.05))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--keep", help="keep the recording at this path")
    parser.add_argument("--compare", help="also print the figures of this recording")
    parser.add_argument("--cow-interval", default="auto", help="passed to memscope attach")
    parser.add_argument("--read", help="only print the figures of this recording")
    args = parser.parse_args()
    if args.read:
        f = figures(args.read)
        show(os.path.basename(args.read), f)
        return verdict(f)
    memscope = os.path.join(os.path.dirname(sys.executable), "memscope")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or os.path.join(tmp, "steady.memscope")
        proc, _ = spawn_tree(args.mib, args.workers)
        try:
            subprocess.run([memscope, "attach", str(proc.pid), "--duration", str(args.duration),
                            "--cow-interval", args.cow_interval, "-o", out],
                           check=True, stdout=subprocess.DEVNULL)
        finally:
            proc.terminate()
            proc.wait()
        new = figures(out)
    print(f"steady tree: {args.workers} workers of {args.mib} MiB, attach --duration"
          f" {args.duration:g}s --cow-interval {args.cow_interval}"
          f" ({len(SAMPLE_COLUMNS)} sample columns), load average {os.getloadavg()[0]:.1f}")
    show("this memscope", new)
    if args.compare:
        show(os.path.basename(args.compare), figures(args.compare))
    return verdict(new)


def verdict(f: dict[str, Any]) -> int:
    ok = f["per_sample"] <= GOAL
    print(f"PASS: whole file <= {GOAL:g} B per process-sample" if ok
          else f"FAIL: whole file over {GOAL:g} B per process-sample")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
