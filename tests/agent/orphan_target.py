"""A target for the orphan tests (Python 3.8+, stdlib only): allocates in a loop and keeps
STATUSDIR/status-PID.json current ({"pid", "tracing", "n"}); with --fork it first forks one
worker that does the same. Stops when STATUSDIR/stop exists; exits 0."""

import json
import os
import sys
import time
import tracemalloc

status_dir = sys.argv[1]
child = os.fork() if "--fork" in sys.argv[2:] else -1
keep = []
n = 0
while not os.path.exists(os.path.join(status_dir, "stop")):
    keep.append([n] * 8)
    del keep[:-1000]
    n += 1
    if n % 20 == 0:
        path = os.path.join(status_dir, f"status-{os.getpid()}.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"pid": os.getpid(), "tracing": tracemalloc.is_tracing(), "n": n}, f)
        os.rename(path + ".tmp", path)
    time.sleep(0.002)
if child > 0:
    os.waitpid(child, 0)
