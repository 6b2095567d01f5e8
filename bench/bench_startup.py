"""Start-up cost of the CLI: wall time per command against `python -c pass`, and what it imports.

    python bench/bench_startup.py --runs 15

Commands timed (each run is a fresh process, the commands run in rotation so load drifts
hit them alike): `memscope --help`, `memscope report --help`, `memscope report` of a small
real recording (fixtures/preload_list.py with 2 workers, ~3 s), and `memscope scan` of a
preload_list worker that copied 62 MiB, whose wall time is set against the scan's own
duration (`scan_duration_s` in its JSON). Then one `python -X importtime` run per command:
its total import time, the heavy packages it loaded and the top imports by own time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")
HEAVY = ("numpy", "rich", "prometheus_client", "memscope.cow.scan", "memscope.report.html")


def memscope_script() -> str:
    path = shutil.which("memscope") or os.path.join(os.path.dirname(sys.executable), "memscope")
    if not os.path.exists(path):
        raise SystemExit("memscope is not installed in this environment")
    return path


def wall(argv: Sequence[str], env: dict[str, str] | None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - t0


def import_profile(argv: Sequence[str]) -> tuple[float, list[tuple[int, str]], list[str]]:
    """(total import seconds, [(own µs, module)] largest first, heavy packages loaded)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=True)
    rows: list[tuple[int, int, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|")
        rows.append((int(own), int(cumulative), name.rstrip()))
    total = sum(cum for _, cum, name in rows if not name.startswith("  "))  # top-level only
    names = {name.strip() for _, _, name in rows}
    top = sorted(((own, name.strip()) for own, _, name in rows), reverse=True)
    return total / 1e6, top, [h for h in HEAVY if h in names]


def small_recording(directory: str) -> str:
    path = os.path.join(directory, "small.memscope")
    subprocess.run([memscope_script(), "run", "-q", "-o", path, "--",
                    sys.executable, os.path.join(FIXTURES, "preload_list.py"), "--workers", "2",
                    "--size", "200000", "--delay", "0.5", "--hold", "2"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return path


def copied_worker(python: str) -> tuple[subprocess.Popen[str], int]:
    """A preload_list tree whose one worker has iterated 2M ints (62 MiB copied)."""
    proc = subprocess.Popen([python, os.path.join(FIXTURES, "preload_list.py"), "--workers", "1",
                             "--delay", "0", "--hold", "3600"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "worked":
            return proc, int(event["pid"])
    raise RuntimeError("preload_list.py ended before its worker worked")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--top", type=int, default=8, help="imports listed per command")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the scan target")
    parser.add_argument("--no-scan", action="store_true", help="skip the scan command")
    parser.add_argument("--baseline", metavar="DIR", default=None,
                        help="also time every memscope command with DIR (a source tree of"
                             " another version, e.g. `git archive main`) first on PYTHONPATH,"
                             " interleaved, so both see the same load")
    args = parser.parse_args()
    exe = memscope_script()
    tree = None
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        commands: dict[str, list[str]] = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "memscope --help": [exe, "--help"],
            "memscope report --help": [exe, "report", "--help"],
            "memscope report small.memscope": [exe, "report", small_recording(tmp)],
        }
        scan_times: list[float] = []
        if not args.no_scan:
            tree, worker = copied_worker(args.python)
            commands["memscope scan (62 MiB copied)"] = [exe, "scan", str(worker), "--json"]
        envs: dict[str, dict[str, str] | None] = {name: None for name in commands}
        if args.baseline:
            env = {**os.environ, "PYTHONPATH": os.path.abspath(args.baseline)}
            for name in [n for n, argv in commands.items() if argv[0] == exe]:
                commands[f"{name} [baseline]"] = commands[name]
                envs[f"{name} [baseline]"] = env
        try:
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, argv in commands.items():
                    if name == "memscope scan (62 MiB copied)":
                        t0 = time.perf_counter()
                        out = subprocess.run(argv, capture_output=True, text=True,
                                             check=True).stdout
                        times[name].append(time.perf_counter() - t0)
                        scan_times.append(json.loads(out)["cow"]["scan_duration_s"])
                    else:
                        times[name].append(wall(argv, envs[name]))
            profiles = {name: import_profile([exe, *argv[1:]]) for name, argv in commands.items()
                        if argv[0] == exe and envs[name] is None}
        finally:
            if tree is not None:
                tree.terminate()
                tree.wait()
    floor = statistics.median(times["python -c pass"])
    # "importtime": the top-level modules' cumulative time under -X importtime, which itself
    # slows imports down; compare it between commands, not with the wall times.
    print(f"{'command':45} {'median':>8} {'min':>8} {'- python':>9}  importtime  heavy modules")
    for name, values in times.items():
        med = statistics.median(values)
        total, _, heavy = profiles.get(name, (0.0, [], []))
        print(f"{name:45} {med * 1000:6.0f}ms {min(values) * 1000:6.0f}ms "
              f"{(med - floor) * 1000:7.0f}ms  {total * 1000:8.0f}ms  {', '.join(heavy) or '-'}")
    if scan_times:
        walls = times["memscope scan (62 MiB copied)"]
        print(f"scan itself (its scan_duration_s): median {statistics.median(scan_times) * 1000:.0f}"
              f" ms; end to end minus scan, same run: median "
              f"{statistics.median(w - s for w, s in zip(walls, scan_times, strict=True)) * 1000:.0f} ms")
    for name, (total, top, _) in profiles.items():
        print(f"\n{name}: imports {total * 1000:.0f} ms; top by own time:")
        for own, module in top[:args.top]:
            print(f"  {own / 1000:7.1f} ms  {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
