"""Pure parts of COW-to-sites: bytes of blocks inside copied pages, grouping by site, sums."""

from __future__ import annotations

import numpy as np

from memscope.cow.sites import (
    UNTRACED,
    Resolution,
    SiteBytes,
    bytes_in_pages,
    sites_by_bytes,
    sum_sites,
)

P = 4096


def test_bytes_in_pages_clips_blocks_to_the_copied_pages() -> None:
    pages = np.array([0x10000, 0x12000], dtype=np.uint64)  # 0x11000 is not copied
    starts = np.array([0x10000, 0x10FF0, 0x11800, 0x12FF0, 0x20000], dtype=np.uint64)
    sizes = np.array([32, 0x20, 64, 0x10010, 48], dtype=np.int64)
    got = bytes_in_pages(starts, sizes, pages)
    # whole block; 16 B in 0x10000 + 16 B in the uncopied page; none; last 16 B of 0x12000;
    # a block far away
    assert got.tolist() == [32, 16, 0, 16, 0]
    # an 8 MiB block with only two copied pages counts two pages, not 8 MiB
    assert bytes_in_pages(np.array([0x10000], np.uint64), np.array([8 << 20]), pages)[0] == 2 * P
    assert bytes_in_pages(starts, sizes, np.zeros(0, np.uint64)).tolist() == [0] * 5


def test_sites_group_by_line_or_traceback_and_keep_untraced_apart() -> None:
    tbs = [
        [("app.py", 12), ("main.py", 3)],
        [("app.py", 12), ("main.py", 9)],  # same line, other caller
        [("lib.py", 40)],
    ]
    res = Resolution(tbs, np.array([0, 1, 2, -1, 0], dtype=np.int64))
    nbytes = np.array([100, 200, 50, 1000, 100], dtype=np.int64)
    by_line = sites_by_bytes(nbytes, res)
    assert [(s.site, s.bytes, s.objects) for s in by_line] == [
        (UNTRACED, 1000, 1), ("app.py:12", 400, 3), ("lib.py:40", 50, 1)
    ]
    assert by_line[1].traceback[0] == ("app.py", 12)
    by_tb = sites_by_bytes(nbytes, res, by="traceback")
    assert [(s.site, s.bytes) for s in by_tb][1:] == [("app.py:12", 200), ("app.py:12", 200),
                                                      ("lib.py:40", 50)]


def test_sum_sites_adds_workers() -> None:
    a = [SiteBytes("app.py:12", 400, 4), SiteBytes(UNTRACED, 10, 1)]
    b = [SiteBytes("app.py:12", 600, 6), SiteBytes("lib.py:40", 50, 1)]
    total = sum_sites([a, b])
    assert [(s.site, s.bytes, s.objects) for s in total] == [
        ("app.py:12", 1000, 10), ("lib.py:40", 50, 1), (UNTRACED, 10, 1)
    ]
