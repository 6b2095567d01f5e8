"""Memory that grows without leaking: a slow preload in the parent, forked workers that each
grow a little (a cache filling, allocator arenas), or workers that copy the preload gradually.

The parent appends --preload-mib MiB of 64 KiB bytes objects over --preload-s seconds, builds
a list of --ints ints, forks --workers children, and waits for them. Each child appends
--worker-rate bytes/s (4 KiB objects every 0.1 s) for --hold seconds while iterating the int
list slice by slice over the same time (refcount writes copy its pages progressively: USS
grows, nothing is allocated), then exits. Prints {"event": "forked", "pids": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HELD: list[bytes] = []


INTS: list[int] = []


def grow(rate: float, seconds: float, chunk: int, touch: bool = False) -> None:
    start = time.monotonic()
    added = touched = 0
    while (now := time.monotonic() - start) < seconds:
        while added < rate * now:
            HELD.append(os.urandom(chunk))
            added += chunk
        if touch:
            upto = min(len(INTS), int(len(INTS) * now / seconds))
            sum(INTS[touched:upto])
            touched = upto
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preload-mib", type=float, default=0.0)
    parser.add_argument("--preload-s", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-rate", type=float, default=0.0)
    parser.add_argument("--hold", type=float, default=8.0)
    parser.add_argument("--ints", type=int, default=0)
    parser.add_argument("--helper", action="store_true",
                        help="first run a short-lived child (as wrappers and shims do)")
    args = parser.parse_args()
    if args.helper:
        subprocess.run(["true"], check=True)
    if args.preload_s > 0:
        grow(args.preload_mib * (1 << 20) / args.preload_s, args.preload_s, 64 * 1024)
    INTS[:] = range(1000, 1000 + args.ints)
    pids = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            grow(args.worker_rate, args.hold, 4096, touch=True)
            os._exit(0)
        pids.append(pid)
    print(json.dumps({"event": "forked", "pids": pids}), flush=True)
    for pid in pids:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
