"""Targets for the tree-following tests: short-lived children, a double fork, PID reuse,
pthread_exit on the main thread, a signal trap. Run as `python tree_target.py MODE ARGS...`."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

MiB = 1024 * 1024


def touch(size: int) -> bytearray:
    buf = bytearray(size)
    for i in range(0, size, 4096):
        buf[i] = 1
    return buf


def children(count: int, log: str) -> None:
    """`count` children living 10-50 ms, 8 at a time; child i exits with i % 100 and appends
    'pid t_start t_end' (its own wall-clock life) to `log`."""
    running = 0
    for i in range(count):
        if running == 8:
            os.wait()
            running -= 1
        pid = os.fork()
        if pid == 0:
            t0 = time.time()
            time.sleep((10 + (i * 37) % 41) / 1000)
            t1 = time.time()
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, f"{os.getpid()} {i} {t0:.6f} {t1:.6f}\n".encode())
            os.close(fd)
            os._exit(i % 100)
        running += 1
    while running:
        os.wait()
        running -= 1


def double_fork(hold: float) -> None:
    """A child forks a grandchild and exits at once; the grandchild (reparented) holds 50 MiB
    for `hold` seconds. The root prints the grandchild's PID and waits for it via a pipe."""
    r, w = os.pipe()
    if os.fork() == 0:
        if os.fork() == 0:
            os.close(r)
            data = touch(50 * MiB)
            os.write(w, f"{os.getpid()}\n".encode())
            time.sleep(hold)
            del data
            os._exit(5)
        os._exit(0)
    os.wait()  # the middle process
    os.close(w)
    with os.fdopen(r) as fh:
        print("grandchild", fh.readline().strip(), flush=True)
        fh.read()  # EOF when the grandchild exits


def reuse(wanted: int) -> None:
    """Fork children that exit at once, forcing the next child onto the same PID through
    ns_last_pid, until `wanted` pairs shared (pid, start_ticks) (at most 400 rounds); print
    the number of rounds and of such pairs."""
    collisions = rounds = 0
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")

    def phase() -> int:  # where we are in the current clock tick (start times count ticks)
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME) % tick_ns

    while collisions < wanted and rounds < 400:
        rounds += 1
        while phase() > tick_ns // 10:  # start at the beginning of a tick
            pass
        pid = os.fork()
        if pid == 0:
            while phase() < tick_ns * 6 // 10:  # alive for ~5 ms, so a fast tick can see it
                pass
            os._exit(0)
        while True:  # a zombie until reaped: read its start time first
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            if fields[0] == b"Z":
                break
        first = int(fields[19])
        os.waitpid(pid, 0)
        with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
            fh.write(str(pid - 1))
        again = os.fork()
        if again == 0:
            time.sleep(0.03)
            os._exit(1)
        with open(f"/proc/{again}/stat", "rb") as fh:
            second = int(fh.read().rsplit(b")", 1)[1].split()[19])
        os.waitpid(again, 0)
        collisions += again == pid and second == first
    print("rounds", rounds, "collisions", collisions, flush=True)


def pthread_exit() -> None:
    """The main thread exits by pthread_exit; a second thread holds 30 MiB, says 'alone' once
    the main thread is gone, and exits the process with 7 when a line arrives on stdin."""

    def worker() -> None:
        data = touch(30 * MiB)
        while True:
            with open(f"/proc/{os.getpid()}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    break
            time.sleep(0.01)
        print("alone", time.time(), flush=True)
        sys.stdin.readline()
        del data
        os._exit(7)

    threading.Thread(target=worker).start()
    ctypes.CDLL(None).pthread_exit(None)


def trap() -> None:
    """Say 'up'; answer each stdin line with the signals received so far."""
    got: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    signal.signal(signal.SIGHUP, lambda s, f: got.append(s))
    print("up", os.getpid(), flush=True)
    for _line in sys.stdin:
        print("got", *got, flush=True)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "children":
        children(int(args[0]), args[1])
    elif mode == "double_fork":
        double_fork(float(args[0]))
    elif mode == "reuse":
        reuse(int(args[0]))
    elif mode == "pthread_exit":
        pthread_exit()
    elif mode == "trap":
        trap()
