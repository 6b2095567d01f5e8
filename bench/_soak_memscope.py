"""`memscope` for the soak benchmark, optionally with tracemalloc snapshots of its own heap.

    python bench/_soak_memscope.py attach PID ...       # exactly `memscope attach PID ...`
    MEMSCOPE_SOAK_TRACEMALLOC=DIR python bench/_soak_memscope.py attach PID ...
    python bench/_soak_memscope.py --diff DIR [--top 25]   # growth: first kept snapshot -> last

With MEMSCOPE_SOAK_TRACEMALLOC=DIR, tracemalloc starts (MEMSCOPE_SOAK_FRAMES deep, default 8)
before memscope is imported and a daemon thread dumps a snapshot to DIR/snap-SSSSSS.pickle
every MEMSCOPE_SOAK_SNAPSHOT_S seconds (default 300). Tracing makes memscope slower and its RSS
larger, so runs with it are for finding what grows, not for the RSS figures.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
import tracemalloc


def _snapshots(directory: str, every: float) -> None:
    started = time.monotonic()
    while True:
        time.sleep(every)
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        elapsed = int(time.monotonic() - started)
        snapshot.dump(os.path.join(directory, f"snap-{elapsed:06d}.pickle"))


def diff(directory: str, top: int, skip: int) -> None:
    """Print the lines whose traced memory grew most from snapshot `skip` to the last one."""
    paths = sorted(glob.glob(os.path.join(directory, "snap-*.pickle")))
    if len(paths) < skip + 2:
        raise SystemExit(f"need at least {skip + 2} snapshots in {directory}, found {len(paths)}")
    first = tracemalloc.Snapshot.load(paths[skip])
    last = tracemalloc.Snapshot.load(paths[-1])
    total = sum(s.size for s in last.statistics("filename")) / 2**20
    print(f"{os.path.basename(paths[skip])} -> {os.path.basename(paths[-1])}: "
          f"{total:.2f} MiB traced now")
    for key in ("lineno", "traceback"):
        print(f"-- top growth by {key}")
        for stat in last.compare_to(first, key)[:top]:
            if stat.size_diff <= 0:
                continue
            print(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks  "
                  f"{stat.size / 1024:10.1f} KiB now")
            lines = stat.traceback.format(limit=1 if key == "lineno" else 8)
            print("    " + "\n    ".join(lines))
        if key == "lineno":
            top = min(top, 8)


def main() -> None:
    if sys.argv[1:2] == ["--diff"]:
        args = sys.argv[2:]
        top = int(args[args.index("--top") + 1]) if "--top" in args else 25
        skip = int(args[args.index("--skip") + 1]) if "--skip" in args else 1
        diff(args[0], top, skip)
        return
    directory = os.environ.get("MEMSCOPE_SOAK_TRACEMALLOC")
    if directory:
        os.makedirs(directory, exist_ok=True)
        tracemalloc.start(int(os.environ.get("MEMSCOPE_SOAK_FRAMES", "8")))
        every = float(os.environ.get("MEMSCOPE_SOAK_SNAPSHOT_S", "300"))
        threading.Thread(target=_snapshots, args=(directory, every), daemon=True).start()
    from memscope.cli import main as memscope_main

    sys.argv[0] = "memscope"
    memscope_main()


if __name__ == "__main__":
    main()
