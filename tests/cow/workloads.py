"""Ground-truth COW workloads, run by each target CPython (3.8+ syntax, stdlib + numpy).

    python workloads.py NAME

The parent builds the data, forks and blocks in os.waitpid (so it writes nothing after the
fork); the child runs the workload, prints "PARENT_PID CHILD_PID work" and holds
(signal.pause) so the test can scan it. For numpy a second, idle child prints
"PARENT_PID CHILD_PID control". The test kills the children to end the parent.
"""

import gc
import os
import signal
import sys

N_INTS = 2000000
N_OBJECTS = 300000
BYTEARRAY = 32 << 20
NUMPY_FLOATS = 8 << 20  # 64 MiB of float64


class Item:
    def __init__(self, i):
        self.ident = i
        self.name = "x"


def build(name):
    if name == "ints":
        return list(range(10**9, 10**9 + N_INTS))
    if name in ("instances", "freeze"):
        if name == "freeze":
            gc.disable()
        items = [Item(i) for i in range(N_OBJECTS)]
        if name == "freeze":
            gc.freeze()
        return items
    if name == "numpy":
        import numpy

        array = numpy.arange(NUMPY_FLOATS, dtype=numpy.float64)
        # Settle the import's young objects first: a collection of them in the child would
        # copy pages that have nothing to do with the array.
        gc.collect()
        return array
    if name == "bytearray":
        return bytearray(b"\x01") * BYTEARRAY
    if name == "idle":
        return None
    raise SystemExit("unknown workload " + name)


def work(name, data):
    if name == "ints":
        for _ in data:
            pass
    elif name in ("instances", "freeze"):
        if name == "freeze":
            gc.enable()
        gc.collect()
    elif name == "numpy":
        data.sum()
    elif name == "bytearray":
        for i in range(0, len(data), 64):
            data[i] = 2


def main():
    name = sys.argv[1]
    data = build(name)
    # numpy: a second, idle child of the same parent measures what any fork of this
    # interpreter copies by itself (at-fork hooks of threading etc.), for comparison.
    roles = ["work", "control"] if name == "numpy" else ["work"]
    sys.stdout.flush()
    children = []
    for role in roles:
        pid = os.fork()
        if pid == 0:
            signal.alarm(600)  # never outlive a crashed test run
            if role == "work":
                work(name, data)
            os.write(1, f"{os.getppid()} {os.getpid()} {role}\n".encode())
            while True:
                signal.pause()
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
