"""A server whose workers burst on shutdown (like interpreter finalization touching objects).

Each worker holds --steady MiB (a touched bytearray), prints {"event": "ready"}, and waits for
SIGTERM; on SIGTERM it touches another --burst MiB, holds it --burst-s seconds, and exits. The
parent forwards SIGTERM to its workers and waits for them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

MiB = 1 << 20


def worker(steady: int, burst: int, burst_s: float) -> None:
    held = bytearray(steady * MiB)
    for i in range(0, len(held), 4096):
        held[i] = 1
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
    # one write per line: the two workers share the pipe (a write < PIPE_BUF is atomic)
    os.write(1, (json.dumps({"event": "ready", "pid": os.getpid()}) + "\n").encode())
    while not stop:
        time.sleep(0.05)
    extra = bytearray(burst * MiB)
    for i in range(0, len(extra), 4096):
        extra[i] = 1
    time.sleep(burst_s)
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steady", type=int, default=8)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--burst-s", type=float, default=0.4)
    args = parser.parse_args()
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            worker(args.steady, args.burst, args.burst_s)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    for pid in children:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
