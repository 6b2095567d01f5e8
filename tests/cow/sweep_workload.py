"""Type sweep target (3.8+ syntax, stdlib only): one data set per built-in type, forked on demand.

    python sweep_workload.py

The parent builds every data set below (about MIB_PER_SET MiB of objects each), prints
"ready", then for each name read from stdin forks a child that touches every object of that
set once (`for x in data: pass`: one refcount write per object, no other write), prints
"PARENT_PID CHILD_PID NAME" and holds until killed. The parent waits for it, then reads the
next name. An empty line ends the parent.
"""

import os
import signal
import sys

MIB_PER_SET = 24


class Plain:
    def __init__(self, i):
        self.a = i
        self.b = "x"


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, i):
        self.a = i
        self.b = "x"


class SlotsAndDict:
    __slots__ = ("__dict__", "a")

    def __init__(self, i):
        self.a = i
        self.b = "x"


class Empty:
    pass


def _count(size):
    return (MIB_PER_SET << 20) // size


# name -> (bytes per object, roughly, incl. allocator rounding; factory of object i)
SETS = {
    "str-ascii-13": (64, lambda i: f"k{i:012d}"),
    "str-ascii-40": (96, lambda i: f"key-{i:036d}"),
    "str-ascii-1000": (1072, lambda i: f"{i:06d}" + "a" * 994),
    "str-latin1-20": (96, lambda i: f"\xe9{i:019d}"),
    "str-ucs2-20": (112, lambda i: f"\u0100{i:019d}"),
    "str-ucs4-20": (176, lambda i: f"\U0001f600{i:019d}"),
    "bytes-10": (48, lambda i: str(i).zfill(10).encode()),
    "bytes-200": (240, lambda i: str(i).zfill(200).encode()),
    "int-small": (32, lambda i: 1000 + i),
    "int-big": (48, lambda i: 10**40 + i),
    "float": (32, lambda i: i + 0.5),
    "tuple": (64, lambda i: (i, i)),
    "list": (64, lambda i: [i]),
    "dict": (96, lambda i: {"a": i}),
    "set": (224, lambda i: {i}),
    "instance-dict": (64, Plain),
    "instance-slots": (48, Slotted),
    "instance-slots-dict": (64, SlotsAndDict),
    "instance-empty": (32, lambda i: Empty()),
}


def main():
    data = {}
    for name, (size, make) in SETS.items():
        data[name] = [make(i) for i in range(_count(size))]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        name = line.strip()
        if not name:
            break
        items = data[name]
        pid = os.fork()
        if pid == 0:
            signal.alarm(600)  # never outlive a crashed test run
            for _ in items:
                pass
            os.write(1, f"{os.getppid()} {os.getpid()} {name}\n".encode())
            while True:
                signal.pause()
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
