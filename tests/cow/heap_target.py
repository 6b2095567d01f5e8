"""Target workload for the heap parser tests (runs under each pyenv CPython, 3.8 syntax).

The parent builds known objects, then forks. The child touches them the way a worker does
(iterates the int list: refcount writes; gc.collect(): GC-head writes), writes ground truth
measured by itself to a file, prints one JSON line and waits until stdin closes.
"""

import array
import gc
import json
import os
import sys

try:
    import numpy
except ImportError:  # CPython 3.15: no numpy wheels yet
    numpy = None


class Probe:
    """Its attribute name is an identifier of compiled code: interned, and immortal on 3.12+
    (3.14+: the refcount word carries ob_flags in its top 16 bits, 0x10000c0000000)."""

    def __init__(self):
        self.memscope_attr_probe = 1


class Record:
    def __init__(self, i):
        self.a = i
        self.b = "r"


class Outer:
    class Inner:
        pass


def main():
    n_ints, n_records, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ints = list(range(1000, 1000 + n_ints))
    records = [Record(i) for i in range(n_records)]
    inners = [Outer.Inner() for _ in range(10)]
    table = {i: i * 2 for i in range(100000)}
    blob = b"x" * (3 << 20)
    buf = bytearray(b"y" * (2 << 20))
    numbers = numpy.arange(1 << 20, dtype=numpy.int64) if numpy is not None else None
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    total = 0
    for x in ints:
        total += x
    gc.collect()
    with open(out + ".records", "wb") as f:
        array.array("Q", [id(r) for r in records]).tofile(f)
    with open(out + ".intpages", "wb") as f:
        array.array("Q", sorted({id(x) >> 12 for x in ints})).tofile(f)
    truth = {
        "pid": os.getpid(),
        "version": list(sys.version_info[:3]),
        "records": len(records),
        "inners": len(inners),
        "record_size": sys.getsizeof(records[0]),
        "blob": id(blob),
        "blob_size": sys.getsizeof(blob),
        "table": id(table),
        "bytearray": id(buf),
        "ndarray_data": numbers.__array_interface__["data"][0] if numpy is not None else None,
        "ndarray_bytes": numbers.nbytes if numpy is not None else None,
        "ints_list": id(ints),
        "identifier": id(next(iter(vars(Probe())))),
        "total": total,
    }
    sys.stdout.write(json.dumps(truth) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()
