"""A long-running target for attach tests: builds objects on a known line in a loop and prints
a JSON line per second-ish; stops when stdin closes (Python 3.8+, stdlib only)."""

import json
import os
import sys
import threading
import time

KEEP = []
stop = threading.Event()


def watch_stdin():
    sys.stdin.read()
    stop.set()


threading.Thread(target=watch_stdin, daemon=True).start()
sys.stdout.write(json.dumps({"event": "ready", "pid": os.getpid()}) + "\n")
sys.stdout.flush()
n = 0
while not stop.is_set():
    KEEP.append([n] * 8)  # SITE:loop
    if len(KEEP) > 5000:
        del KEEP[:1000]
    n += 1
    time.sleep(0.001)
sys.stdout.write(json.dumps({"event": "done", "n": n}) + "\n")
