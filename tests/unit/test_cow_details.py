"""Compact COW scan detail (schema 3): one cow_details row per scan, old cow_by_* rows still read.

The scans come from real recordings (tests/data/recordings: preload_list, 2 workers copying a
list of 300k ints, recorded by schema-1 and schema-2 memscope)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from memscope.cli import cli
from memscope.cow._model import CowScan, TypeBytes
from memscope.cow.store import (
    DETAIL_KEYS,
    MAX_TYPES,
    decode_detail,
    encode_detail,
    read_scans,
    write_scan,
)
from memscope.errors import RecordingError
from memscope.recording import SCHEMA_VERSION, RecordingWriter, open_recording

DATA = Path(__file__).parents[1] / "data" / "recordings"
OLD = {1: DATA / "schema1-preload_list.memscope", 2: DATA / "schema2-preload_list.memscope"}
OLD_TABLES = ("cow_by_kind", "cow_by_type", "cow_by_cause", "cow_by_type_cause")


def _bare(scan: CowScan) -> CowScan:
    return dataclasses.replace(scan, by_kind={}, by_type=[], by_cause={}, by_type_cause={})


def _old_scans(version: int) -> dict[int, list[CowScan]]:
    rec = open_recording(str(OLD[version]))
    try:
        return read_scans(rec.conn)
    finally:
        rec.close()


@pytest.mark.parametrize("version", [1, 2])
def test_old_recordings_read_their_detail_rows(version: int) -> None:
    # GIVEN a recording of schema 1 or 2 (detail as cow_by_* rows, one per cell)
    conn = sqlite3.connect(f"file:{OLD[version]}?mode=ro", uri=True)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version < SCHEMA_VERSION
    ids = {(pid, t): sid for sid, pid, t in conn.execute("SELECT id, pid, t FROM cow_scans")}
    # WHEN this memscope reads its scans
    scans = [s for per in _old_scans(version).values() for s in per]
    # THEN every scan carries exactly the rows of its id, the largest type first
    assert len(scans) == len(ids) and any(s.by_type for s in scans)
    for s in scans:
        sid = ids[(s.pid, s.scanned_at)]
        assert [(t.type, t.bytes, t.objects) for t in s.by_type] == conn.execute(
            "SELECT type, bytes, objects FROM cow_by_type WHERE scan_id = ?"
            " ORDER BY bytes DESC", (sid,)).fetchall()
        assert sorted((k, c, b) for k, row in s.by_kind.items() for c, b in row.items()) == \
            sorted(conn.execute("SELECT kind, class, bytes FROM cow_by_kind WHERE scan_id = ?",
                                (sid,)))
        assert s.by_cause == dict(conn.execute(
            "SELECT cause, bytes FROM cow_by_cause WHERE scan_id = ?", (sid,)))
        assert sorted((t, c, b) for t, row in s.by_type_cause.items() for c, b in row.items()) \
            == sorted(conn.execute("SELECT type, cause, bytes FROM cow_by_type_cause"
                                   " WHERE scan_id = ?", (sid,)))
    # the workers copied the preloaded ints: the type is named with its bytes
    assert max(t.bytes for s in scans for t in s.by_type if t.type == "int") > 1 << 20
    conn.close()


def test_real_scans_round_trip_exactly_in_a_third_of_the_bytes(tmp_path: Path) -> None:
    # GIVEN the real scans of a schema-2 recording, rewritten by this memscope
    old = _old_scans(2)
    path = tmp_path / "new.memscope"
    writer = RecordingWriter(str(path), {})
    ids = {}
    for process_id in old:
        ids[process_id] = writer.add_process(
            pid=old[process_id][0].pid, start_ticks=process_id, ppid=1, parent_id=None,
            role="worker", cmdline=["w"], exe=None, python_version=None, started_at=0.0)
        for scan in old[process_id]:
            write_scan(writer.conn, ids[process_id], scan, scan.copying)
    writer.close()
    # THEN they read back identical, from one cow_details row each and no cow_by_* table
    rec = open_recording(str(path))
    try:
        back = read_scans(rec.conn)
        tables = {r[0] for r in rec.conn.execute("SELECT name FROM sqlite_master")}
        (rows, blob_bytes), = rec.conn.execute(
            "SELECT COUNT(*), SUM(LENGTH(data)) FROM cow_details")
    finally:
        rec.close()
    assert {ids[p]: v for p, v in old.items()} == back
    assert "cow_details" in tables and not tables & set(OLD_TABLES)
    assert rows == sum(len(v) for v in old.values())
    # AND the detail takes at most a third of the record bytes of the cow_by_* rows (their
    # payload alone, without page slack; 3.5x smaller measured on this recording)
    conn = sqlite3.connect(f"file:{OLD[2]}?mode=ro", uri=True)
    (row_bytes,) = conn.execute(
        "SELECT SUM(payload) FROM dbstat WHERE name IN (?, ?, ?, ?)", OLD_TABLES).fetchone()
    conn.close()
    assert 0 < blob_bytes <= row_bytes / 3, (blob_bytes, row_bytes)


def test_more_types_than_kept_fold_into_other() -> None:
    # GIVEN a scan with MAX_TYPES + 10 types, each in two causes, and a zero kind cell
    n = MAX_TYPES + 10
    types = [TypeBytes(f"t{i}", (n - i) * 4096, n - i) for i in range(n)]
    scan = CowScan(pid=7, parent_pid=1, scanned_at=1.0e9, mode="pfn", inherited_bytes=1 << 30,
                   copied_bytes=sum(t.bytes for t in types), shared_bytes=0,
                   new_private_bytes=0, swapped_bytes=0,
                   by_kind={"pymalloc": {"copied": 8192, "shared": 0}, "stack": {"copied": 0}},
                   by_type=types, by_cause={"refcount": 4096},
                   by_type_cause={t.type: {"refcount": t.bytes // 2, "gc": t.bytes // 2}
                                  for t in types})
    # WHEN it is encoded and decoded
    back = _bare(scan)
    decode_detail(encode_detail(scan), back)
    # THEN the largest MAX_TYPES - 1 types are kept as they were, the rest summed as "(other)"
    # (read largest first, as the cow_by_type rows were)
    rest = types[MAX_TYPES - 1:]
    other = TypeBytes("(other)", sum(t.bytes for t in rest), sum(t.objects for t in rest))
    assert back.by_type == sorted([*types[:MAX_TYPES - 1], other], key=lambda t: -t.bytes)
    assert back.by_type_cause["(other)"] == {"refcount": sum(t.bytes // 2 for t in rest),
                                             "gc": sum(t.bytes // 2 for t in rest)}
    assert set(back.by_type_cause) == {t.type for t in back.by_type}
    assert back.by_kind == {"pymalloc": {"copied": 8192}}  # non-zero cells, as the rows were
    assert back.by_cause == scan.by_cause


def _packed(value: object) -> bytes:
    return zlib.compress(json.dumps(value).encode())


GOOD = {"kind": {}, "type": [["int", 4096, 1]], "cause": {}, "type_cause": {}}


@pytest.mark.parametrize("data", [
    b"not zlib at all",
    zlib.compress(b"{")[:-3],  # truncated
    _packed([]),
    _packed({k: v for k, v in GOOD.items() if k != "cause"}),
    _packed({**GOOD, "type": [["int", True, 1]]}),
    _packed({**GOOD, "type": [["int", 4096]]}),
    _packed({**GOOD, "type": [[7, 4096, 1]]}),
    _packed({**GOOD, "kind": {"anon": {"copied": 1.5}}}),
    _packed({**GOOD, "type_cause": {"int": []}}),
    "a text value",
])
def test_a_damaged_detail_is_a_one_line_recording_error(data: object) -> None:
    scan = CowScan(pid=7, parent_pid=1, scanned_at=1.0e9, mode="pfn", inherited_bytes=0,
                   copied_bytes=0, shared_bytes=0, new_private_bytes=0, swapped_bytes=0)
    with pytest.raises(RecordingError) as err:
        decode_detail(data, scan)
    message = str(err.value)
    assert "cow_details" in message and "\n" not in message


def test_good_detail_decodes() -> None:
    scan = CowScan(pid=7, parent_pid=1, scanned_at=1.0e9, mode="pfn", inherited_bytes=0,
                   copied_bytes=0, shared_bytes=0, new_private_bytes=0, swapped_bytes=0)
    decode_detail(_packed(GOOD), scan)
    assert scan.by_type == [TypeBytes("int", 4096, 1)] and set(GOOD) == set(DETAIL_KEYS)


def test_a_report_on_a_damaged_detail_exits_2_with_one_line(tmp_path: Path) -> None:
    # GIVEN a recording with real scans whose one detail row is overwritten
    path = tmp_path / "r.memscope"
    writer = RecordingWriter(str(path), {})
    old = _old_scans(2)
    process_id = next(iter(old))
    row = writer.add_process(pid=old[process_id][0].pid, start_ticks=1, ppid=1, parent_id=None,
                             role="worker", cmdline=["w"], exe=None, python_version=None,
                             started_at=0.0)
    sid = write_scan(writer.conn, row, old[process_id][-1])
    writer.add_samples([(row, 1.0e9 + i, *([4096] * 14)) for i in range(3)])
    writer.close()
    ok = CliRunner().invoke(cli, ["report", str(path), "--format", "json"])
    assert ok.exit_code == 0, ok.output
    cow = [p["cow"] for p in json.loads(ok.output)["processes"] if p.get("cow")]
    assert cow[0]["by_type"][0]["type"] == old[process_id][-1].by_type[0].type
    damaged = tmp_path / "damaged.memscope"
    shutil.copy(path, damaged)
    with sqlite3.connect(damaged) as conn:
        conn.execute("UPDATE cow_details SET data = ? WHERE scan_id = ?", (b"\x78\x9c0", sid))
    # WHEN it is reported THEN exit 2 and one line naming the damaged detail
    bad = CliRunner().invoke(cli, ["report", str(damaged), "--format", "json"])
    assert bad.exit_code == 2
    assert "cow_details" in bad.output and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_detail_decodes_or_is_a_recording_error(data: st.DataObject) -> None:
    # GIVEN a real scan's detail BLOB with 1-8 bytes changed, or cut short
    scans = [s for per in _old_scans(2).values() for s in per if s.by_type]
    scan = data.draw(st.sampled_from(scans))
    blob = bytearray(encode_detail(scan))
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    blob = blob[:data.draw(st.integers(0, len(blob)))]
    # WHEN it is decoded THEN it gives a scan's detail or the one-line error, nothing else
    back = _bare(scan)
    message = ""
    try:
        decode_detail(bytes(blob), back)
    except RecordingError as exc:
        message = str(exc)
    if message:
        assert "cow_details" in message and "\n" not in message
    else:
        assert all(isinstance(t.bytes, int) for t in back.by_type)
