"""Pagemap decoding and page classes on pagemap bytes captured from a real fork.

The capture (tests/cow/capture_pagemap.py) holds a CPython 3.11 child that overwrote a
32 MiB bytearray inherited from its parent, with the child's smaps taken at the same moment.
The kernel's own smaps accounting is the independent truth for the decoded bits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memscope.cow._model import PageClass
from memscope.cow.classify import (
    bytes_by_kind,
    class_counts,
    classify,
    detect_mode,
    mapping_kind,
)
from memscope.cow.pagemap import (
    decode_pagemap,
    page_addresses,
    private_writable,
    runs,
)
from memscope.procfs import parse_maps, parse_smaps

DATA = Path(__file__).parent.parent / "data" / "cow"
MiB = 1 << 20


@pytest.fixture(scope="module")
def capture() -> dict[str, np.ndarray]:
    with np.load(DATA / "pagemap_bytearray311.npz") as npz:
        return {k: npz[k] for k in npz.files}


def test_present_and_exclusive_bits_match_smaps_per_mapping(capture: dict[str, np.ndarray]) -> None:
    # GIVEN the child's regions, pagemap entries and smaps captured together
    regions = private_writable(parse_maps(capture["maps"].tobytes()))
    smaps = {m.entry.start: m.memory for m in parse_smaps(capture["smaps"].tobytes())}
    addrs, region_index = page_addresses(regions)
    # WHEN the entries are decoded
    table = decode_pagemap(addrs, capture["child"])
    # THEN per mapping, exclusive pages are exactly its Private_* bytes, and present pages its
    # Rss: smaps skips pages vm_normal_page() rejects (the zero page, special PTEs) that
    # pagemap still reports present, seen here as at most one page per mapping.
    zero = table.pfn == capture["zero_pfn"][0]
    present = np.bincount(region_index, weights=table.present & ~zero, minlength=len(regions))
    exclusive = np.bincount(
        region_index, weights=table.present & table.exclusive, minlength=len(regions)
    )
    for i, r in enumerate(regions):
        mem = smaps[r.start]
        assert 0 <= present[i] * 4096 - mem.rss <= 4096, r
        assert exclusive[i] * 4096 == mem.private_clean + mem.private_dirty, r
    assert len(addrs) == sum(r.size for r in regions) // 4096


def test_page_addresses_follow_the_regions(capture: dict[str, np.ndarray]) -> None:
    regions = private_writable(parse_maps(capture["maps"].tobytes()))
    addrs, region_index = page_addresses(regions)
    _first, counts = runs(addrs)
    # Each mapping starts a run (or continues an adjacent one) and pages are 4 KiB apart.
    assert int(counts.sum()) == len(addrs)
    assert all(addrs[region_index == i][0] == r.start for i, r in enumerate(regions))
    assert all(addrs[region_index == i][-1] == r.end - 4096 for i, r in enumerate(regions))


def test_root_capture_reads_pfns_and_both_modes_agree_on_anon_copies(
    capture: dict[str, np.ndarray],
) -> None:
    regions = private_writable(parse_maps(capture["maps"].tobytes()))
    addrs, region_index = page_addresses(regions)
    child = decode_pagemap(addrs, capture["child"])
    parent = decode_pagemap(addrs, capture["parent"])
    assert detect_mode(child) == "pfn"  # captured as root
    by_pfn = classify(child, parent, "pfn")
    by_bit = classify(child, parent, "exclusive-bit")
    # The 32 MiB bytearray was overwritten: both modes count it (and a little more) copied.
    for classes in (by_pfn, by_bit):
        copied = int((classes == PageClass.COPIED).sum()) * 4096
        assert 32 * MiB <= copied < 34 * MiB
    # Shared pages have the parent's PFN in pfn mode.
    shared = by_pfn == PageClass.SHARED
    anon = ~child.file
    assert np.array_equal(child.pfn[shared & anon], parent.pfn[shared & anon])
    # Copied pages never share the parent's frame.
    copied = by_pfn == PageClass.COPIED
    assert not np.any(child.pfn[copied] == parent.pfn[copied])
    # Without PFNs (zeroed as for an unprivileged reader) the fallback gives the same copies.
    blind_child = decode_pagemap(addrs, capture["child"] & ~np.uint64((1 << 55) - 1))
    blind_parent = decode_pagemap(addrs, capture["parent"] & ~np.uint64((1 << 55) - 1))
    assert detect_mode(blind_child) == "exclusive-bit"
    blind = classify(blind_child, blind_parent, "exclusive-bit")
    assert np.array_equal(blind == PageClass.COPIED, by_bit == PageClass.COPIED)
    kinds = [mapping_kind(r, False) for r in regions]
    by_kind = bytes_by_kind(class_counts(by_pfn, region_index, len(regions)), kinds)
    assert by_kind["anon"]["copied"] >= 32 * MiB  # malloc mmap'd the bytearray's buffer
    assert "stack" in by_kind
    assert "library-data" in by_kind
    assert "malloc-heap" in by_kind


def _entries(*bits: int, pfn: int = 0) -> int:
    value = pfn
    for b in bits:
        value |= 1 << b
    return value


def test_classes_on_crafted_entries() -> None:
    # GIVEN one page per case: (child entry, parent entry)
    P, S, F, X = 63, 62, 61, 56
    cases = [
        (_entries(P, pfn=7), _entries(P, pfn=7), PageClass.SHARED, PageClass.SHARED),
        (_entries(P, X, pfn=8), _entries(P, pfn=7), PageClass.COPIED, PageClass.COPIED),
        (_entries(P, X, pfn=8), 0, PageClass.NEW_PRIVATE, PageClass.NEW_PRIVATE),
        (_entries(S), _entries(P, pfn=7), PageClass.SWAPPED, PageClass.SWAPPED),
        (0, _entries(P, pfn=7), PageClass.NOT_PRESENT, PageClass.NOT_PRESENT),
        # copied, then shared with a grandchild: a different frame, but not the worker's own
        # (not exclusive, so not in its USS): shared, in both modes
        (_entries(P, pfn=9), _entries(P, pfn=7), PageClass.SHARED, PageClass.SHARED),
        # an unwritten file page of .data is the page cache's, whatever the parent did
        (_entries(P, F, pfn=5), _entries(P, pfn=6), PageClass.SHARED, PageClass.SHARED),
        # the parent swapped its copy out: the child's exclusive page is still a copy
        (_entries(P, X, pfn=8), _entries(S), PageClass.COPIED, PageClass.COPIED),
    ]
    child = np.array([c[0] for c in cases], dtype=np.uint64)
    parent = np.array([c[1] for c in cases], dtype=np.uint64)
    addrs = np.arange(len(cases), dtype=np.uint64) * np.uint64(4096)
    c, p = decode_pagemap(addrs, child), decode_pagemap(addrs, parent)
    # WHEN classified in each mode THEN every page has its expected class
    assert classify(c, p, "pfn").tolist() == [int(x[2]) for x in cases]
    assert classify(c, p, "exclusive-bit").tolist() == [int(x[3]) for x in cases]
    with pytest.raises(ValueError, match="unknown COW scan mode"):
        classify(c, p, "guess")


def test_chunked_classification_equals_one_pass(capture: dict[str, np.ndarray]) -> None:
    """scan.py classifies huge mappings in chunks: pieces of a region keep its index."""
    from memscope.cow.scan import _chunks

    regions = private_writable(parse_maps(capture["maps"].tobytes()))
    addrs, region_index = page_addresses(regions)
    for limit in (1, 7, 1000, 1 << 20):
        got_addrs, got_index = [], []
        for pieces, owner in _chunks(regions, limit):
            a, piece_index = page_addresses(pieces)
            assert len(a) <= limit
            got_addrs.append(a)
            got_index.append(owner[piece_index])
        assert np.array_equal(np.concatenate(got_addrs), addrs)
        assert np.array_equal(np.concatenate(got_index), region_index)
