"""memscope._malloc: freed large buffers go back to the kernel (glibc's dynamic mmap threshold).

Measured in fresh interpreters, whose allocator state is known: one 24 MiB buffer is allocated
and freed first (as a COW scan's page buffer is), then eight 4 MiB buffers, of which seven are
freed while the last one is kept.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

MIB = 1 << 20

_PROBE = """
import sys
from memscope._malloc import return_freed_buffers, trim
if sys.argv[1] == "fixed":
    assert return_freed_buffers()

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

big = bytearray(24 << 20)  # mmapped; freeing it raises glibc's dynamic threshold to 24 MiB
del big
before = rss()
blocks = [bytearray(4 << 20) for _ in range(8)]
keep = blocks[-1]
del blocks
if sys.argv[1] == "trimmed":
    assert trim()
print(rss() - before)
"""


def retained(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return int(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc on Linux")
def test_freed_buffers_are_returned_only_with_the_fixed_threshold() -> None:
    # WHEN seven of eight 4 MiB buffers are freed after a 24 MiB one was
    default, fixed = retained("default"), retained("fixed")
    # THEN glibc's defaults keep the freed 28 MiB resident (heap chunks under a live one) ...
    assert default >= 24 * MIB, default
    # ... and with the threshold fixed only the kept buffer (4 MiB) stays
    assert fixed <= 6 * MIB, fixed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc on Linux")
def test_trim_returns_free_pages_between_live_chunks() -> None:
    # GIVEN glibc's defaults, the same 28 MiB freed under a live buffer; WHEN trim() runs
    trimmed = retained("trimmed")
    # THEN only the live buffer stays resident
    assert trimmed <= 6 * MIB, trimmed
