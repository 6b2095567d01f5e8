"""The scanner's word diff of a worker's copied pages against its parent's, on real forks.

PageDiff.of compares the two slices of pages once and takes the differing words from flat
indexes. The former code compared whole pages, copied the differing rows of both slices and
took the words with a 2-D np.nonzero: ~15x slower when many words differ. Both must give the
same pages and words, in the same order: `_former` below is that code, the reference.

Workloads (tests/cow/workloads.py): a 32 MiB bytearray written every 64th byte (every
copied page differs in many words) and 2M iterated ints (their refcounts are restored:
most copied pages equal the parent's). Some pages are marked unread (`ok` False), as a page
the parent could not give.
"""

from __future__ import annotations

import contextlib
import os
import signal

import numpy as np
import pytest

from memscope.cow.causes import PageDiff
from memscope.cow.pagemap import PAGE_SIZE, maps_of_live, private_writable, read_pages
from memscope.cow.scan import _classify_pages
from memscope.cow.scan_slices import slices
from memscope.procfs import ProcFS
from tests.cow.test_scan_groundtruth import _fork, require_python


def _former(child: np.ndarray, parent: np.ndarray, ok: np.ndarray, first: int) -> PageDiff:
    n = len(ok)
    cw = child.reshape(n, PAGE_SIZE).view(np.uint64)
    pw = parent.reshape(n, PAGE_SIZE).view(np.uint64)
    differ = (cw != pw).any(axis=1) & ok
    rows = np.flatnonzero(differ)
    pi, wi = np.nonzero(cw[rows] != pw[rows])
    return PageDiff(differ, rows[pi] + first, wi.astype(np.int64))


@pytest.mark.parametrize("workload", ["bytearray", "ints"])
def test_word_diff_equals_the_former_diff(workload: str) -> None:
    # GIVEN a worker that copied pages of its parent's data
    proc, parent, children = _fork(require_python("3.11"), workload)
    child = children["work"]
    fs = ProcFS()
    try:
        regions = private_writable(maps_of_live(fs, child))
        copied = _classify_pages(fs, child, parent, regions, None).copied
        assert len(copied) > 4096  # >= 16 MiB copied
        differing_words = 0
        for lo, hi in slices(copied):  # the scanner's slices
            addrs = copied[lo:hi]
            pages, ok = read_pages(fs, child, addrs)
            theirs, their_ok = read_pages(fs, parent, addrs)
            ok &= their_ok
            ok[::7] = False  # pages the parent "could not give"
            # WHEN the slice is diffed
            got = PageDiff.of(pages, theirs, ok, first=lo)
            # THEN pages and words are the former code's, in the same order
            want = _former(pages, theirs, ok, lo)
            assert np.array_equal(got.differ, want.differ)
            assert np.array_equal(got.page, want.page)
            assert np.array_equal(got.word, want.word)
            assert got.page.dtype == want.page.dtype and got.word.dtype == want.word.dtype
            differing_words += len(got.word)
    finally:
        proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        proc.wait()
    if workload == "bytearray":  # one written byte per 64: 64 differing words per page
        assert differing_words > 32 * len(copied)
