"""Causes and per-type split of copied pages, on pages with a HeapMap of known addresses.

GIVEN a parent page image and a HeapMap placing objects at known addresses, WHEN chosen
words of the child's copy differ, THEN the page goes to the cause of the strongest word.
"""

from __future__ import annotations

import numpy as np
import pytest

from memscope.cow._model import HeapMap
from memscope.cow.causes import UNATTRIBUTED, attribute

PAGE = 4096
INTS = 0x10000  # a 4 KiB pool of 32-byte int blocks (header 48 bytes)
ITEMS = 0x11000  # a 4 KiB pool of 64-byte GC-tracked Item blocks: 16-byte GC head + object
BUF = 0x20000  # a 3-page bytearray buffer, owned by a bytearray object


def heap_map() -> HeapMap:
    ints = np.arange(INTS + 48, INTS + PAGE - 31, 32, dtype=np.uint64)[:-1]  # last block free
    items = np.arange(ITEMS + 48, ITEMS + PAGE - 63, 64, dtype=np.uint64)
    block_start = np.concatenate((ints, items, [BUF]))
    start = np.concatenate((ints, items + np.uint64(16), [BUF]))
    size = np.concatenate((np.full(len(ints), 32), np.full(len(items), 64), [3 * PAGE]))
    tidx = np.concatenate((np.zeros(len(ints)), np.ones(len(items)), [2])).astype(np.int64)
    gc = np.concatenate((np.zeros(len(ints)), np.ones(len(items)), [0])).astype(np.bool_)
    buf = np.zeros(len(block_start), dtype=np.bool_)
    buf[-1] = True
    return HeapMap(
        start=start.astype(np.uint64),
        block_start=block_start.astype(np.uint64),
        block_size=size.astype(np.int64),
        type_index=tidx,
        gc_tracked=gc,
        is_buffer=buf,
        type_names=["int", "__main__.Item", "bytearray"],
        allocator_ranges=np.array([[INTS, INTS + 48], [ITEMS, ITEMS + 48]], dtype=np.uint64),
    )


ADDRS = np.array([INTS, ITEMS, BUF, BUF + PAGE], dtype=np.uint64)


def pages() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    parent = rng.integers(0, 256, size=(len(ADDRS), PAGE), dtype=np.uint8)
    return parent, parent.copy()


def poke(child: np.ndarray, addr: int) -> None:
    """Change the u64 word at `addr` of the child's copy."""
    page = int(np.searchsorted(ADDRS, np.uint64(addr), side="right")) - 1
    off = addr - int(ADDRS[page])
    child[page, off : off + 8] ^= 0xFF


def causes_of(child: np.ndarray, parent: np.ndarray, **kw: object) -> list[str]:
    from memscope.cow.causes import CAUSES

    result = attribute(ADDRS, child, parent, np.ones(len(ADDRS), np.bool_), heap_map(), 4096)
    return [CAUSES[c] for c in result.page_cause]


def test_identical_pages_are_transient_split_by_gc_tracking() -> None:
    parent, child = pages()
    assert causes_of(child, parent) == [
        "transient_refcount",
        "transient_gc",
        "transient_refcount",
        "transient_refcount",
    ]


@pytest.mark.parametrize(
    ("addr", "page", "cause"),
    [
        (INTS + 48 + 5 * 32, 0, "refcount"),  # ob_refcnt of an int
        (INTS + 48 + 5 * 32 + 8, 0, "data"),  # its ob_type word
        (INTS + 8, 0, "allocator"),  # pool header
        (INTS + 48 + 125 * 32, 0, "allocator"),  # first word of the free block
        (ITEMS + 48 + 64, 1, "gc"),  # PyGC_Head word 1 of the second Item
        (ITEMS + 48 + 64 + 8, 1, "gc"),  # PyGC_Head word 2
        (ITEMS + 48 + 64 + 16, 1, "refcount"),  # its ob_refcnt
        (ITEMS + 48 + 64 + 40, 1, "data"),  # a field
        (BUF, 2, "data"),  # first word of a buffer is data, not a refcount
    ],
)
def test_one_differing_word_gives_its_cause(addr: int, page: int, cause: str) -> None:
    parent, child = pages()
    poke(child, addr)
    assert causes_of(child, parent)[page] == cause


def test_strongest_cause_wins_on_a_page() -> None:
    parent, child = pages()
    poke(child, ITEMS + 48)  # gc
    poke(child, ITEMS + 48 + 16)  # refcount
    assert causes_of(child, parent)[1] == "refcount"
    poke(child, ITEMS + 48 + 24)  # data
    assert causes_of(child, parent)[1] == "data"


def test_bytes_per_type_split_by_object_bytes() -> None:
    parent, child = pages()
    poke(child, BUF + PAGE + 100)
    result = attribute(ADDRS, child, parent, np.ones(4, np.bool_), heap_map(), 4096)
    by_type = {t.type: t for t in result.by_type}
    # 125 live ints of 32 bytes; 63 Items of 64 bytes; 2 copied pages of the buffer
    assert by_type["int"].bytes == 125 * 32
    assert by_type["int"].objects == 125
    assert by_type["__main__.Item"].bytes == 63 * 64
    assert by_type["__main__.Item"].objects == 63
    assert by_type["bytearray"].bytes == 2 * PAGE
    assert by_type["bytearray"].objects == 0
    # pool headers, the free int block, and the 16-byte tails of both pools
    assert by_type[UNATTRIBUTED].bytes == (48 + 32 + 16) + (48 + 16)
    assert sum(t.bytes for t in result.by_type) == 4 * PAGE
    assert result.by_cause == {"transient_gc": PAGE, "transient_refcount": 2 * PAGE,
                               "data": PAGE}
    assert result.by_type_cause["bytearray"] == {"transient_refcount": PAGE, "data": PAGE}


def test_without_heap_map_only_write_or_transient_and_unread_pages() -> None:
    parent, child = pages()
    poke(child, INTS + 200)
    ok = np.array([True, True, True, False])
    result = attribute(ADDRS, child, parent, ok, None)
    assert result.by_cause == {"write": PAGE, "transient": 2 * PAGE, "unread": PAGE}
    assert [(t.type, t.bytes) for t in result.by_type] == [(UNATTRIBUTED, 4 * PAGE)]
