"""Leak verdicts on real runs: false leaks on workloads that do not leak, detections on
leaky_worker. Each case is recorded with `memscope run`, then judged by the memscope on
PYTHONPATH (--compare DIR judges the same recordings with another checkout, e.g. main).

Run: python bench/bench_leaks.py [--repeat 3] [--compare /work/main] [--cases NAME...]
Prints, per case and per checkout: processes judged, `leak` verdicts on processes that do not
leak (false), and on leaky_worker the leaky workers found / their count (detection).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "fixtures"
MAIN = "import sys; from memscope.cli import main; sys.argv[0] = 'memscope'; main()"

CASES: dict[str, list[str]] = {
    # workers copy the preload progressively (refcount touches), hold 12 s: no leak
    "preload_list": ["preload_list.py", "--workers", "4", "--size", "1000000", "--delay",
                     "1", "--hold", "12"],
    "preload_numpy": ["preload_numpy.py", "--workers", "4", "--delay", "1", "--hold", "12"],
    "gc_freeze": ["gc_freeze.py", "--workers", "4", "--delay", "1", "--hold", "12"],
    "mutate_bytearray": ["mutate_bytearray.py", "--workers", "4", "--delay", "1", "--hold",
                         "12"],
    "mp_pool": ["mp_pool.py", "--workers", "4", "--tasks", "64"],
    # real gunicorn (--preload, 4 workers): requests touch successive slices for 20 s
    "gunicorn": ["gunicorn_app.py", "--workers", "4", "--requests", "400", "--duration", "20",
                 "--hold", "2"],
    # 2 workers copy a 1.5M-int preload gradually over 12 s: USS grows ~4 MiB/s, no leak
    "copying": [str(REPO / "tests" / "verdicts" / "slow_growth.py"), "--ints", "1500000",
                "--workers", "2", "--hold", "12"],
    # 4 workers, 2 leak 64 KiB x 20/s for 10 s
    "leaky_worker": ["leaky_worker.py", "--workers", "4", "--leaky-workers", "2", "--duration",
                     "10", "--delay", "0.5", "--hold", "0.5"],
}


def record(case: str, out: Path) -> list[dict[str, Any]]:
    argv = [sys.executable, "-c", MAIN, "run", "-q", "-i", "0.1", "-o", str(out),
            "--cow-interval", "0", "--", sys.executable, str(FIX / CASES[case][0]),
            *CASES[case][1:]]  # FIX / an absolute path is that path
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{case}: exit {done.returncode}: {done.stderr[-500:]}")
    return [json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith('{"')]


def judge(path: Path, checkout: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    # cwd outside any checkout: `-c` puts the cwd first on sys.path, ahead of PYTHONPATH
    done = subprocess.run([sys.executable, "-c", MAIN, "report", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=300, env=env, check=True,
                          cwd=path.parent)
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def tally(case: str, doc: dict[str, Any], events: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(judged processes, false leaks, leaky workers found)."""
    leaky = set()
    for e in events:
        if e.get("event") == "truth":
            leaky = set(e.get("leaky_pids", []))
    judged = false = found = 0
    for p in doc["processes"]:
        leak = p.get("leak") or {}
        if leak.get("verdict") in ("leak", "stable"):
            judged += 1
        if leak.get("verdict") == "leak":
            if p["pid"] in leaky:
                found += 1
            else:
                false += 1
    return judged, false, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    checkouts = {"this": REPO} | ({"compare": args.compare} if args.compare else {})
    print(f"{'case':18} {'checkout':8} runs judged false-leaks detected")
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            rows = {name: [0, 0, 0, 0] for name in checkouts}
            for i in range(args.repeat):
                path = Path(tmp) / f"{case}-{i}.memscope"
                events = record(case, path)
                truth = next((e for e in events if e.get("event") == "truth"), {})
                for name, checkout in checkouts.items():
                    judged, false, found = tally(case, judge(path, checkout), events)
                    row = rows[name]
                    row[0] += judged
                    row[1] += false
                    row[2] += found
                    row[3] += len(truth.get("leaky_pids", []))
            for name, (judged, false, found, leaky) in rows.items():
                det = f"{found}/{leaky}" if leaky else "-"
                print(f"{case:18} {name:8} {args.repeat:4} {judged:6} {false:11} {det:>8}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
