"""Target for the COW-to-sites tests (Python 3.8+, stdlib only).

The parent allocates two populations on known lines, forks one worker that touches only the
ints (copying their pages), prints {"event": "ready", ...} and waits for stdin to close.
"""

import json
import os
import sys
import time


class Record:
    def __init__(self, i):
        self.i = i


INTS = [i * 7 + 100000 for i in range(int(sys.argv[1]))]  # SITE:ints
RECORDS = [Record(i) for i in range(20000)]  # SITE:records

pid = os.fork()
if pid == 0:
    total = 0
    for _ in range(3):
        for x in INTS:  # refcount writes: copies the pages holding the ints
            total += x
    sys.stdout.write(json.dumps({"event": "worked", "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    time.sleep(60)
    os._exit(0)
sys.stdout.write(json.dumps({"event": "ready", "worker": pid, "pre": 0}) + "\n")
sys.stdout.flush()
sys.stdin.read()
os.kill(pid, 9)
os.waitpid(pid, 0)
