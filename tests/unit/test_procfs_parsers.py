"""GIVEN captured /proc text WHEN parsed THEN the typed records hold exactly its numbers."""

from __future__ import annotations

import os

import pytest

from memscope.procfs import (
    parse_maps,
    parse_smaps,
    parse_smaps_rollup,
    parse_stat,
    parse_statm,
    parse_status,
    sum_rollups,
)
from tests.conftest import CAPTURED_PROC

PARENT, CHILD, HOSTILE, GRANDCHILD = 14337, 14339, 14340, 14341
KIB = 1024


def captured(pid: int, name: str) -> bytes:
    with open(os.path.join(CAPTURED_PROC, str(pid), name), "rb") as fh:
        return fh.read()


def test_smaps_rollup_numbers_and_uss() -> None:
    r = parse_smaps_rollup(captured(PARENT, "smaps_rollup"))
    assert r.rss == 17408 * KIB
    assert r.pss == 5476 * KIB
    assert r.shared_clean == 6620 * KIB
    assert r.shared_dirty == 10020 * KIB
    assert r.private_dirty == 768 * KIB
    assert r.uss == r.private_clean + r.private_dirty == 768 * KIB
    assert r.shared == (6620 + 10020) * KIB
    assert r.pss_anon + r.pss_file + r.pss_shmem == pytest.approx(r.pss, abs=2 * KIB)


def test_smaps_sums_to_rollup() -> None:
    # GIVEN smaps and smaps_rollup of the same idle process
    mappings = parse_smaps(captured(PARENT, "smaps"))
    rollup = parse_smaps_rollup(captured(PARENT, "smaps_rollup"))
    total = sum_rollups([m.memory for m in mappings])
    # THEN page counts agree exactly, and PSS within the kernel's per-mapping rounding
    assert len(mappings) == len(parse_maps(captured(PARENT, "maps")))
    assert total.rss == rollup.rss
    assert total.uss == rollup.uss
    assert total.shared == rollup.shared
    assert abs(total.pss - rollup.pss) <= len(mappings) * KIB


def test_smaps_mapping_details() -> None:
    mappings = parse_smaps(captured(PARENT, "smaps"))
    heap = [m for m in mappings if m.entry.path == "[heap]"]
    assert len(heap) == 1
    assert heap[0].entry.writable and heap[0].entry.private
    assert heap[0].memory.rss > 0
    assert any(m.entry.path.endswith("python3.11") for m in mappings)


def test_stat_of_hostile_name() -> None:
    st = parse_stat(captured(HOSTILE, "stat"))
    assert st.comm == "x) (y z"
    assert st.pid == HOSTILE
    assert st.ppid == PARENT
    assert st.state == "S"
    assert st.num_threads == 1


@pytest.mark.parametrize(
    ("raw", "comm"),
    [
        (b"7 ()) R 1 7 7 0 -1 0 42 0 0 0 3 4 0 0 20 0 2 0 555 0 9", ")"),
        (b"7 (a b) (c) R 1 7 7 0 -1 0 42 0 0 0 3 4 0 0 20 0 2 0 555 0 9", "a b) (c"),
        (b"7 (\xff\xfe) R 1 7 7 0 -1 0 42 0 0 0 3 4 0 0 20 0 2 0 555 0 9", "\ufffd\ufffd"),
    ],
)
def test_stat_survives_parentheses_spaces_and_bytes(raw: bytes, comm: str) -> None:
    st = parse_stat(raw)
    assert st.comm == comm
    assert (st.ppid, st.minflt, st.utime_ticks, st.stime_ticks, st.num_threads, st.start_ticks) == (
        1, 42, 3, 4, 2, 555)
    assert st.exit_code is None  # short line: no field 52


def test_stat_identity_fields_of_tree() -> None:
    parent = parse_stat(captured(PARENT, "stat"))
    child = parse_stat(captured(CHILD, "stat"))
    grandchild = parse_stat(captured(GRANDCHILD, "stat"))
    assert child.ppid == PARENT and grandchild.ppid == CHILD
    assert parent.start_ticks <= child.start_ticks <= grandchild.start_ticks
    assert parent.exit_code == 0


def test_statm_and_status() -> None:
    statm = parse_statm(captured(PARENT, "statm"))
    assert statm.size == 5106 * 4096
    assert statm.resident == 4352 * 4096 == 17408 * KIB
    assert statm.shared == 1655 * 4096
    status = parse_status(captured(PARENT, "status"))
    assert status.name == "python3"
    assert status.ppid == 14249
    assert status.vm_rss == 17408 * KIB
    assert status.rss_anon == 10788 * KIB
    assert status.rss_file == 6620 * KIB
    assert status.vm_swap == 0
    assert status.threads == 1


def test_maps_path_with_spaces() -> None:
    entries = parse_maps(captured(HOSTILE, "maps"))
    exe = [e for e in entries if e.path == "/tmp/x) (y z"]
    assert exe, "the executable mapping keeps the spaces and parentheses of its path"
    assert all(e.start < e.end for e in entries)
    assert any(e.path == "[stack]" for e in entries)
    anon = [e for e in entries if e.path == ""]
    assert all(e.inode == 0 for e in anon)
