"""After forking --workers idle children, the parent iterates its preloaded list: the *parent*
copies the int pages (refcount writes), while the children keep sharing the originals with
each other. No child copied anything. Prints {"event": "touched"} and holds --hold seconds."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=500_000)
    parser.add_argument("--hold", type=float, default=2.0)
    args = parser.parse_args()
    data = list(range(args.size))
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            time.sleep(args.hold + 1.0)
            os._exit(0)
        children.append(pid)
    time.sleep(0.5)  # the children are scanned at birth, before the parent writes
    total = 0
    for value in data:
        total += value
    print(json.dumps({"event": "touched", "sum": total}), flush=True)
    time.sleep(args.hold)
    for pid in children:
        os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
