"""A multiprocessing Pool(2) whose master preloads 300k ints; argv[1], when given, is passed to
set_start_method ("fork", "spawn", "forkserver"); otherwise the interpreter's default."""

from __future__ import annotations

import multiprocessing as mp
import sys
import time

DATA = list(range(300_000))


def work(i: int) -> int:
    time.sleep(0.4)
    return i + sum(DATA[:1000])


def main() -> int:
    if len(sys.argv) > 1:
        mp.set_start_method(sys.argv[1])
    print(mp.get_start_method(), flush=True)
    with mp.Pool(2) as pool:
        print(sum(pool.map(work, range(8))), flush=True)
        time.sleep(1.5)  # leaves time for COW scans of the idle workers
    return 0


if __name__ == "__main__":
    sys.exit(main())
