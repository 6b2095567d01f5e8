"""MemReader on real processes: bulk pages, small reads, unmapped addresses, vanished pids."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess

import numpy as np
import pytest

from memscope.cow.memreader import PAGE, MemReader, Unmapped
from memscope.procfs import ProcessGone, ProcFS


@pytest.fixture
def pages() -> mmap.mmap:
    """Four pages of this process with a known pattern (page i filled with byte i+1)."""
    region = mmap.mmap(-1, 4 * PAGE)
    for i in range(4):
        region[i * PAGE : (i + 1) * PAGE] = bytes([i + 1]) * PAGE
    return region


def address_of(region: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(region))


def test_read_pages_in_any_order_with_an_unmapped_one(pages: mmap.mmap) -> None:
    base = address_of(pages)
    addrs = np.array(
        [base, base + PAGE, base + 2 * PAGE, 0x1000, base + 3 * PAGE, base], dtype=np.uint64
    )
    with MemReader(os.getpid(), ProcFS()) as reader:
        data, valid = reader.read_pages(addrs)
    assert valid.tolist() == [True, True, True, False, True, True]
    assert [int(row[0]) for row in data] == [1, 2, 3, 0, 4, 1]
    assert (data[1] == 2).all()


def test_small_reads_and_c_strings(pages: mmap.mmap) -> None:
    text = ctypes.create_string_buffer(b"memscope reads me\0tail")
    base = address_of(pages)
    with MemReader(os.getpid(), ProcFS()) as reader:
        assert reader.read_cstring(ctypes.addressof(text)) == b"memscope reads me"
        # A read across a page boundary.
        assert reader.read(base + PAGE - 2, 4) == b"\x01\x01\x02\x02"
        with pytest.raises(Unmapped):
            reader.read(8, 8)
        with pytest.raises(Unmapped):
            reader.read_u64(1 << 62)


def test_vanished_process_is_process_gone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(ProcessGone):
        MemReader(proc.pid, ProcFS())
