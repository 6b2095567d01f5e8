"""Capture the pagemap test data (tests/data/cow/pagemap_<name>.npz) from a real fork.

    python tests/cow/capture_pagemap.py PYTHON WORKLOAD NAME

Runs tests/cow/workloads.py WORKLOAD under PYTHON, then stores the child's maps and smaps text
and the raw pagemap entries of child and parent over the child's private writable mappings
(read twice, and kept only if both reads agree, so smaps describes the same state),
and the PFN of the shared zero page (present in pagemap, not counted in smaps' Rss).
"""

import os
import subprocess
import sys
import time

import numpy as np

from memscope.cow.pagemap import private_writable, read_pagemap
from memscope.procfs import ProcFS

HERE = os.path.dirname(os.path.abspath(__file__))


def zero_page_pfn() -> int:
    """PFN of the kernel's shared zero page: what a read-only touched anon page maps."""
    import mmap

    buf = mmap.mmap(-1, 4096)
    assert buf[0] == 0  # read fault: maps the zero page
    addr = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // 4096 * 8)
        entry = int.from_bytes(f.read(8), "little")
    return entry & ((1 << 55) - 1)


def main() -> None:
    python, workload, name = sys.argv[1:4]
    proc = subprocess.Popen(
        [python, os.path.join(HERE, "workloads.py"), workload], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    parent, child = map(int, proc.stdout.readline().split()[:2])
    fs = ProcFS()
    time.sleep(0.5)  # let the child reach signal.pause()
    try:
        maps = fs.read(child, "maps")
        regions = private_writable(fs.maps(child))
        before = read_pagemap(fs, child, regions)
        smaps = fs.read(child, "smaps")
        child_entries = read_pagemap(fs, child, regions)
        parent_entries = read_pagemap(fs, parent, regions)
        assert np.array_equal(before, child_entries), "child changed during capture, retry"
    finally:
        os.kill(child, 9)
        proc.wait()
    out = os.path.join(HERE, "..", "data", "cow", f"pagemap_{name}.npz")
    np.savez_compressed(
        out,
        maps=np.frombuffer(maps, dtype=np.uint8),
        smaps=np.frombuffer(smaps, dtype=np.uint8),
        child=child_entries,
        parent=parent_entries,
        zero_pfn=np.array([zero_page_pfn()], dtype=np.uint64),
    )
    print(out, len(child_entries), "pages")


if __name__ == "__main__":
    main()
