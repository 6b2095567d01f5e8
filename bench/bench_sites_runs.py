#!/usr/bin/env python3
"""Done-when check of issue 11: does every worker get its COW sites, topped by the preload line?

    python bench/bench_sites_runs.py [--runs 5] [--size 5000000] [--workers 4] [--hold 3]
                                     [--python PATH] [--no-hog]

Each run is `memscope run --trace-sites -- PYTHON fixtures/preload_list.py --workers W --size S
--hold H` with a CPU hog beside it (`stress-ng --cpu 2`, or two Python busy loops when
stress-ng is missing). From each recording, per worker: its latest `cow_sites` row set (when,
relative to the first fork, against the worker's exit), the top site, the share of copied
pages parsed and of blocks looked up, or the error memscope stored (meta
`cow_sites_resolution`, notes). A run passes when every worker's top site is the preload line
(`return list(range(size))` in fixtures/preload_list.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "fixtures" / "preload_list.py"


def preload_line() -> str:
    for n, line in enumerate(FIXTURE.read_text().splitlines(), 1):
        if "return list(range(size))" in line:
            return f"{FIXTURE.resolve()}:{n}"
    raise SystemExit("preload line not found in fixtures/preload_list.py")


def start_hog() -> list[subprocess.Popen[bytes]]:
    if shutil.which("stress-ng"):
        return [subprocess.Popen(["stress-ng", "--cpu", "2", "--timeout", "3600"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)]
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]


def stop_hog(hogs: list[subprocess.Popen[bytes]]) -> None:
    for h in hogs:
        with contextlib.suppress(ProcessLookupError):
            if isinstance(h.args, list) and h.args[0] == "stress-ng":
                os.killpg(h.pid, signal.SIGTERM)  # its own session: stress-ng and its workers
            else:
                h.kill()
        h.wait()


def per_worker(path: Path) -> list[dict[str, object]]:
    c = sqlite3.connect(path)
    t0 = c.execute("select min(started_at) from processes where role='worker'").fetchone()[0]
    meta = dict(c.execute("select key, value from meta").fetchall())
    res = {r["pid"]: r for r in json.loads(meta.get("cow_sites_resolution") or "[]")}
    out = []
    for rid, pid, exited in c.execute("select id, pid, exited_at from processes "
                                      "where role='worker' order by pid").fetchall():
        last = c.execute("select max(t) from cow_sites where process_id=?", (rid,)).fetchone()[0]
        top = None
        if last is not None:
            top = c.execute("select site from cow_sites where process_id=? and t=? "
                            "order by bytes desc limit 1", (rid, last)).fetchone()[0]
        r = res.get(pid, {})
        notes = [m for (m,) in c.execute("select message from notes where pid=?", (pid,))]
        out.append({"pid": pid, "top": top, "at": None if last is None else last - t0,
                    "exit": None if exited is None else exited - t0,
                    "page_rate": r.get("page_rate"), "sample_rate": r.get("sample_rate"),
                    "seconds": r.get("seconds"), "error": r.get("error") or "; ".join(notes)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=5_000_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--hold", type=float, default=3.0)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--no-hog", action="store_true")
    args = ap.parse_args()
    want = preload_line()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the hog is stopped (finally)
    memscope = [sys.executable, "-m", "memscope"]
    passed = 0
    with tempfile.TemporaryDirectory(prefix="bench-sites-runs-") as tmp:
        for run in range(1, args.runs + 1):
            rec = Path(tmp) / f"run{run}.memscope"
            hogs = [] if args.no_hog else start_hog()
            t = time.perf_counter()
            try:
                subprocess.run([*memscope, "run", "-o", str(rec), "--trace-sites", "--",
                                args.python, str(FIXTURE), "--workers", str(args.workers),
                                "--size", str(args.size), "--hold", str(args.hold)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=REPO, check=False)
            finally:
                stop_hog(hogs)
            rows = per_worker(rec)
            ok = len(rows) == args.workers and all(r["top"] == want for r in rows)
            passed += ok
            print(f"run {run}: {'PASS' if ok else 'FAIL'} ({time.perf_counter() - t:.0f} s wall,"
                  f" load {os.getloadavg()[0]:.1f})")
            for r in rows:
                top = str(r["top"]).rsplit("/", 1)[-1]
                when = "-" if r["at"] is None else f"+{r['at']:.1f}s"
                print(f"  worker {r['pid']}: top {top} at {when} (exit +{r['exit'] or 0:.1f}s)"
                      f" pages {r['page_rate'] or 0:.0%} blocks {r['sample_rate'] or 0:.0%}"
                      f" resolve {r['seconds'] or 0:.2f}s {r['error'] or ''}".rstrip())
    print(f"{passed}/{args.runs} runs: every worker's top site is {want.rsplit('/', 1)[-1]}")


if __name__ == "__main__":
    main()
