"""Does every forked worker end with a COW scan that matches its USS growth?

Runs `memscope run` on fixtures/preload_list.py (2M ints, 4 workers, hold 3 s by default)
`--runs` times, optionally with a CPU hog beside it (`--hog N`: `stress-ng --cpu N`), and
checks for each worker that its latest scan's copied bytes are within `--tolerance` (10 %) of
its USS growth (last full sample minus first). Prints one line per run and the count of runs in
which every worker passed:

    python bench/cow_coverage.py --runs 10 --hog 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

from memscope.analysis.summary import build_summary
from memscope.recording import open_recording

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "fixtures", "preload_list.py")


@contextlib.contextmanager
def hog(cpus: int) -> Iterator[None]:
    if cpus <= 0:
        yield
        return
    if shutil.which("stress-ng") is None:
        sys.exit("stress-ng is not installed")
    proc = subprocess.Popen(["stress-ng", "--cpu", str(cpus), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def one_run(path: str, args: argparse.Namespace) -> tuple[bool, str]:
    cmd = [sys.executable, "-c", "from memscope.cli import main; main()", "run", "-q",
           "-o", path, "--", sys.executable, FIXTURE, "--workers", str(args.workers),
           "--size", str(args.size), "--hold", str(args.hold)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec = open_recording(path)
    try:
        s = build_summary(rec)
    finally:
        rec.close()
    parts = []
    ok = len(s.workers) == args.workers
    for w in s.workers:
        growth = w.uss_growth
        cow = s.cow.processes.get(w.id) if s.cow is not None else None
        copied = None if cow is None else cow.latest.copied_bytes
        good = (growth is not None and copied is not None and growth > 0
                and abs(copied - growth) <= args.tolerance * growth)
        ok = ok and good
        parts.append(f"{w.pid}: uss+{(growth or 0) / 2**20:.1f} scan {(copied or 0) / 2**20:.1f}"
                     f"{'' if good else ' MISS'}")
    cpu = f"cpu {s.sampler.process_cpu_fraction:.1%}"
    return ok, f"{'ok  ' if ok else 'FAIL'} {cpu}; " + "; ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hog", type=int, default=0, help="stress-ng --cpu N beside it")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--keep", default=None, help="copy failed runs' recordings here")
    args = parser.parse_args()
    passed = 0
    with tempfile.TemporaryDirectory() as tmp, hog(args.hog):
        for i in range(args.runs):
            path = os.path.join(tmp, f"run{i}.memscope")
            ok, line = one_run(path, args)
            passed += ok
            if not ok and args.keep:
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy(path, args.keep)
            print(f"run {i + 1}: {line}", flush=True)
    print(f"{passed}/{args.runs} runs: every worker scanned within {args.tolerance:.0%}"
          f" of its USS growth (hog: stress-ng --cpu {args.hog})")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
