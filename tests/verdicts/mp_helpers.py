"""A multiprocessing Pool with the start method given as argv[1] ("spawn" or "forkserver"):
the resource tracker and the spawned workers (or the fork server) are exec'd processes."""

from __future__ import annotations

import multiprocessing as mp
import sys
import time


def work(i: int) -> int:
    time.sleep(0.5)
    return i * i


def main() -> int:
    ctx = mp.get_context(sys.argv[1])
    with ctx.Pool(2) as pool:
        print(sum(pool.map(work, range(8))), flush=True)
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
