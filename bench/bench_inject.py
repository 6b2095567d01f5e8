#!/usr/bin/env python3
"""Latency of `memscope attach --trace-sites` injection per CPython version, and its effect on a
target serving requests.

Latency: a target whose main thread loops in select.select(0.2 s) (tests/agent/
blocked_target.py) gets the agent injected REPS times (a fresh target each time). Reported
(medians): `held` how long the main thread was stopped (ptrace only), `queued` until the
statement was queued (ptrace) or sys.remote_exec returned, `started` until the agent answered
its first ping. The target's select calls are checked (none returns early or with a result).

Requests (--gunicorn): a real `gunicorn --preload -w 2` master on 127.0.0.1 (this
environment's gunicorn, run by each interpreter that can import it) serves a closed request
loop; the agent is injected into the master and detached, REPS times. Reported: requests
served, errors, median and slowest request during the whole run, the master's exit status.

Usage: python bench/bench_inject.py [--versions 3.8,3.11,...] [--reps 5] [--gunicorn]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from memscope.inject import make_run_dir, remove_run_dir
from memscope.inject.attach import detach_agents, inject
from tests.agent.conftest import any_python, target
from tests.agent.test_inject_gunicorn import Requests, gunicorn_path, wait_serving
from tests.conftest import FIXTURES


def latency(python: str, reps: int) -> dict[str, float | int | str]:
    held, queued, started, errors = [], [], [], 0
    method = ""
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            stop = os.path.join(tmp, "stop")
            proc = subprocess.Popen(
                [python, target("blocked_target.py"), "select", stop, os.path.join(tmp, "p")],
                stdout=subprocess.PIPE, text=True,
            )
            assert proc.stdout is not None
            proc.stdout.readline()
            run_dir = make_run_dir()
            try:
                info = inject(proc.pid, run_dir, 16, timeout=60)["inject"]
                detach_agents(run_dir)
            finally:
                remove_run_dir(run_dir)
                Path(stop).touch()
            assert proc.wait(timeout=60) == 7
            done = json.loads(proc.stdout.readline())
            errors += len(done["errors"])
            method = info["method"]
            queued.append(info["queued_s"])
            started.append(info["started_s"])
            if "held_s" in info:
                held.append(info["held_s"])
    ms = lambda xs: round(1000 * statistics.median(xs), 2) if xs else "-"  # noqa: E731
    return {"method": method, "held_ms": ms(held), "queued_ms": ms(queued),
            "started_ms": ms(started), "target_errors": errors}


def gunicorn(python: str, reps: int) -> dict[str, object] | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = gunicorn_path(Path(tmp))
        env = dict(os.environ, PYTHONPATH=str(path), MEMSCOPE_FIXTURE_SIZE="50000")
        if path is None or subprocess.run([python, "-c", "import gunicorn.app.wsgiapp"],
                                          env=env, capture_output=True).returncode:
            return None
        port = 18000 + os.getpid() % 1000
        proc = subprocess.Popen(
            [python, "-m", "gunicorn", "--preload", "-w", "2", "-b", f"127.0.0.1:{port}",
             "gunicorn_app:app"], cwd=FIXTURES, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        load = Requests(port, limit=1_000_000)
        try:
            wait_serving(port, proc)
            load.start()
            for _ in range(reps):
                run_dir = make_run_dir()
                try:
                    inject(proc.pid, run_dir, 16, timeout=60)
                    detach_agents(run_dir)
                finally:
                    remove_run_dir(run_dir)
            load.stop_at = load.ok + 50
            load.join(timeout=120)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        d = sorted(load.durations)
        return {"injections": reps, "requests": load.ok, "errors": len(load.errors),
                "master_exit": code, "median_ms": round(1000 * statistics.median(d), 1),
                "max_ms": round(1000 * d[-1], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", default="3.8,3.9,3.10,3.11,3.12,3.13,3.14,3.15")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--gunicorn", action="store_true")
    args = ap.parse_args()
    print("| CPython | method | held ms | queued ms | agent answering ms | target errors |")
    print("|---|---|---|---|---|---|")
    for v in args.versions.split(","):
        python = any_python(v)
        if python is None:
            continue
        r = latency(python, args.reps)
        print(f"| {v} | {r['method']} | {r['held_ms']} | {r['queued_ms']} | {r['started_ms']}"
              f" | {r['target_errors']} |", flush=True)
    if args.gunicorn:
        print("\n| CPython | injections | requests served | request errors | median / max"
              " request ms | master exit |")
        print("|---|---|---|---|---|---|")
        for v in args.versions.split(","):
            python = sys.executable if v == "venv" else any_python(v)
            g = gunicorn(python, args.reps) if python else None
            if g is not None:
                print(f"| {v} | {g['injections']} | {g['requests']} | {g['errors']}"
                      f" | {g['median_ms']} / {g['max_ms']} | {g['master_exit']} |", flush=True)


if __name__ == "__main__":
    main()
