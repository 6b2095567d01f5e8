"""An idle forked tree for the benchmarks: a parent that touched MIB MiB, and W workers."""

from __future__ import annotations

import subprocess
import sys

import psutil

TREE = """
import os, signal, sys, time
mib, workers = int(sys.argv[1]), int(sys.argv[2])
blob = bytearray(mib * 1024 * 1024)
for i in range(0, len(blob), 4096):
    blob[i] = 1
pids = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
        time.sleep(3600)
        os._exit(0)
    pids.append(pid)
print("ready", flush=True)
signal.signal(signal.SIGTERM, lambda *a: [os.kill(p, 15) for p in pids] and os._exit(0))
time.sleep(3600)
"""


def spawn_tree(mib: int, workers: int) -> tuple[subprocess.Popen[str], list[int]]:
    """Start the tree; return the root process and the PIDs of root and workers.

    Stop it with proc.terminate(): the root forwards SIGTERM to its workers."""
    proc = subprocess.Popen([sys.executable, "-c", TREE, str(mib), str(workers)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    pids = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children()]
    assert len(pids) == workers + 1
    return proc, pids
