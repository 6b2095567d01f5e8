"""A target whose main thread spends its life blocked in one kind of call (Python 3.8+, stdlib).

Usage: blocked_target.py MODE STOPFILE [PORTFILE]. MODE is one of sleep, select, epoll (each a
0.2 s timed wait), accept (a loopback listener; PORTFILE receives its port), pipe (a line read
from stdin) or lock (a thread waits on a Lock that a stdin line releases; the main thread
joins it). Every completed call is checked; after each one the target stops if STOPFILE exists.
Prints {"event": "ready"} first and {"event": "done", "n": calls, "errors": [...]} last, then
exits with status 7 (so that an unchanged exit status is visible).
"""

import json
import os
import select
import socket
import sys
import threading
import time

WAIT = 0.2
mode, stopfile = sys.argv[1], sys.argv[2]
errors = []


def timed(call):
    t0 = time.monotonic()
    got = call()
    took = time.monotonic() - t0
    if got or took < WAIT * 0.99:
        errors.append(f"{mode} returned {got!r} after {took:.4f}s")


def one_call(state):
    if mode == "sleep":
        timed(lambda: time.sleep(WAIT))
    elif mode == "select":
        timed(lambda: select.select([state["r"]], [], [], WAIT)[0])
    elif mode == "epoll":
        timed(lambda: state["ep"].poll(WAIT))
    elif mode == "accept":
        conn, _ = state["sock"].accept()
        data = conn.recv(1)
        conn.close()
        if data != b"x":
            errors.append(f"accept: got {data!r}")
    elif mode == "pipe":
        line = sys.stdin.readline()
        if line != "x\n":
            errors.append(f"pipe: got {line!r}")
    elif mode == "lock":  # main joins a thread waiting on a lock that a stdin line releases
        lock = threading.Lock()
        lock.acquire()
        got = []

        def release():
            got.append(sys.stdin.readline())
            lock.release()

        waiter = threading.Thread(target=lambda: got.append(lock.acquire(timeout=60)))
        releaser = threading.Thread(target=release)
        waiter.start()
        releaser.start()
        waiter.join()
        releaser.join()
        if sorted(map(str, got)) != ["True", "x\n"]:
            errors.append(f"lock: got {got!r}")


def main():
    r, w = os.pipe()
    state = {"r": r}
    if mode == "epoll":
        state["ep"] = select.epoll()
        state["ep"].register(r, select.EPOLLIN)
    if mode == "accept":
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        state["sock"] = sock
        with open(sys.argv[3] + ".tmp", "w") as f:
            f.write(str(sock.getsockname()[1]))
        os.rename(sys.argv[3] + ".tmp", sys.argv[3])
    sys.stdout.write(json.dumps({"event": "ready", "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    n = 0
    while not os.path.exists(stopfile):
        one_call(state)
        n += 1
    sys.stdout.write(json.dumps({"event": "done", "n": n, "errors": errors}) + "\n")
    sys.stdout.flush()
    os.write(w, b"")
    sys.exit(7)


main()
