"""Compact sample storage (schema 2): exact round trips, one home per sample, schema-1 reads."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from memscope.analysis.summary import build_summary
from memscope.cli.report import write_report
from memscope.errors import RecordingError
from memscope.recording import SAMPLE_COLUMNS, SCHEMA_VERSION, RecordingWriter, open_recording
from memscope.sample_codec import decode_chunks, encode_chunk
from memscope.sample_store import CHUNK_ROWS

SCHEMA1 = Path(__file__).parents[1] / "data" / "recordings" / "schema1-preload_list.memscope"
NCOL = len(SAMPLE_COLUMNS)


def _rows(pid: int, n: int, t0: float, seed: int) -> list[tuple[object, ...]]:
    rng = np.random.default_rng(seed)
    t = t0 + np.cumsum(0.2 + rng.normal(0, 0.003, n))
    rows = []
    for i in range(n):
        full = i % 7 == 0
        values = [int(v) for v in rng.integers(0, 1 << 40, NCOL)]
        rows.append((pid, float(t[i]), *(v if full or c in (0, NCOL - 1) else None
                                         for c, v in enumerate(values))))
    return rows


def _decoded(blob: bytes) -> list[tuple[object, ...]]:
    f = decode_chunks([blob], SAMPLE_COLUMNS, SAMPLE_COLUMNS)
    cols = [[None if v != v else int(v) for v in f.values[c].tolist()] for c in SAMPLE_COLUMNS]
    return [(t, *(c[i] for c in cols)) for i, t in enumerate(f.t.tolist())]


def test_chunk_round_trip_is_exact_with_nulls_extremes_and_wraparound() -> None:
    rows = [r[1:] for r in _rows(1, 300, 1_796_189_364.7149556, seed=1)]
    # extremes: readers get float64 columns, exact to 2**53 bytes (8 PiB); big jumps both ways
    rows[5] = (rows[5][0], (1 << 53) - 1, *rows[5][2:])
    rows[6] = (rows[6][0], -(1 << 53), *rows[6][2:])
    rows[7] = (rows[7][0], 0, *rows[7][2:])
    blob = encode_chunk([r[0] for r in rows], [[r[1 + c] for r in rows] for c in range(NCOL)])
    assert _decoded(blob) == rows


def test_steady_values_cost_a_few_bytes_per_sample() -> None:
    # GIVEN a steady process: rss constant, rollups every 10th tick, 0.2 s +- jitter
    rng = np.random.default_rng(3)
    n = CHUNK_ROWS
    t = (1.8e9 + np.cumsum(0.2 + rng.normal(0, 0.002, n))).tolist()
    cols = [[(100 << 20) + c * 4096 if (i % 10 == 0 or c in (0, NCOL - 1)) else None
             for i in range(n)] for c in range(NCOL)]
    blob = encode_chunk(t, cols)
    # THEN the chunk is a small fraction of the ~100 B a plain row costs
    assert len(blob) / n < 4
    assert _decoded(blob) == [(t[i], *(c[i] for c in cols)) for i in range(n)]


def _homes(path: str) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    plain = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    chunked = conn.execute("SELECT IFNULL(SUM(n), 0) FROM sample_chunks").fetchone()[0]
    conn.close()
    return plain, chunked


def test_writer_keeps_each_sample_in_exactly_one_table(tmp_path: Path) -> None:
    path = str(tmp_path / "r.memscope")
    w = RecordingWriter(path, {"started_at": 0.0})
    a = w.add_process(pid=1, start_ticks=1, ppid=0, parent_id=None, role="root", cmdline=["x"],
                      exe=None, python_version=None, started_at=0.0)
    b = w.add_process(pid=2, start_ticks=2, ppid=1, parent_id=a, role="worker", cmdline=["x"],
                      exe=None, python_version=None, started_at=0.0)
    rows_a, rows_b = _rows(a, CHUNK_ROWS + 100, 1e9, 1), _rows(b, 2 * CHUNK_ROWS + 3, 1e9, 2)
    for i in range(0, len(rows_b), 50):  # ticks arrive in batches, as from the sampler
        w.add_samples(rows_a[i:i + 50] + rows_b[i:i + 50])
        w.flush()
    # WHILE open: full chunks are compact, the rest plain, nothing twice
    plain, chunked = _homes(path)
    assert chunked == 3 * CHUNK_ROWS and plain == len(rows_a) + len(rows_b) - chunked
    rec = open_recording(path)
    assert len(rec.columns()) == len(rows_a) + len(rows_b)
    rec.close()
    w.mark_exited(b, 2e9, 0)  # an exited process's tail is sealed at once
    w.close()
    plain, chunked = _homes(path)
    assert plain == 0 and chunked == len(rows_a) + len(rows_b)
    rec = open_recording(path)
    got = [(s.process_id, s.t, *(s[c] for c in SAMPLE_COLUMNS)) for s in rec.samples(b)]
    assert got == rows_b
    cols = rec.columns(("rss", "pss"))
    assert np.all(np.diff(cols.process_id) >= 0)
    assert cols.t[cols.process_id == a].tolist() == [r[1] for r in rows_a]


def test_close_gives_freed_plain_pages_back(tmp_path: Path) -> None:
    path = str(tmp_path / "r.memscope")
    w = RecordingWriter(path, {})
    pid = w.add_process(pid=1, start_ticks=1, ppid=0, parent_id=None, role="root",
                        cmdline=["x"], exe=None, python_version=None, started_at=0.0)
    rows = _rows(pid, CHUNK_ROWS - 1, 1e9, 4)  # all plain until close
    w.add_samples(rows)
    w.flush()
    conn = sqlite3.connect(path)
    before = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    w.close()
    conn = sqlite3.connect(path)
    after, free = conn.execute("PRAGMA page_count").fetchone()[0], conn.execute(
        "PRAGMA freelist_count").fetchone()[0]
    assert free == 0 and after < before
    assert os.path.getsize(path) == after * 4096


def test_schema1_recording_stays_readable() -> None:
    # GIVEN a recording written by memscope with schema 1 (plain rows only, a real run)
    rec = open_recording(str(SCHEMA1))
    assert rec.conn.execute("PRAGMA user_version").fetchone()[0] == 1 < SCHEMA_VERSION
    plain = rec.conn.execute("SELECT COUNT(*), COUNT(pss) FROM samples").fetchone()
    cols = rec.columns()
    assert len(cols) == plain[0] and int((~np.isnan(cols.values["pss"])).sum()) == plain[1]
    summary = build_summary(rec)
    peak_uss = rec.conn.execute("SELECT MAX(uss) FROM samples WHERE process_id = ?",
                                (summary.workers[0].id,)).fetchone()[0]
    assert summary.workers[0].peak.uss == peak_uss
    assert summary.workers[0].extra["cow"]["copied_bytes"] > 1 << 20  # 300k ints iterated


@pytest.mark.parametrize("fmt", ["text", "json", "html", "csv", "mprof"])
def test_schema1_recording_renders_in_every_format(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"r.{fmt}"
    write_report(str(SCHEMA1), fmt, str(out))
    assert out.stat().st_size > 500


def test_corrupt_chunk_is_a_recording_error(tmp_path: Path) -> None:
    path = str(tmp_path / "r.memscope")
    w = RecordingWriter(path, {})
    pid = w.add_process(pid=1, start_ticks=1, ppid=0, parent_id=None, role="root",
                        cmdline=["x"], exe=None, python_version=None, started_at=0.0)
    w.add_samples(_rows(pid, 10, 1e9, 5))
    w.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE sample_chunks SET data = substr(data, 1, 9)")
    conn.commit()
    conn.close()
    with pytest.raises(RecordingError, match="sample chunk is corrupt"):
        open_recording(path).columns()


@pytest.mark.parametrize(("n", "message"), [
    (3159498702, "row count outside"),  # found by the fuzzer: sized a 23.5 GiB array
    (0, "row count outside"),
    (4, "more rows than their row counts"),
    (6, "fewer rows than their row counts"),
])
def test_a_chunk_row_count_that_lies_is_a_recording_error(
    tmp_path: Path, n: int, message: str
) -> None:
    # GIVEN a chunk of 5 samples whose row count says otherwise
    path = str(tmp_path / "r.memscope")
    w = RecordingWriter(path, {})
    pid = w.add_process(pid=1, start_ticks=1, ppid=0, parent_id=None, role="root",
                        cmdline=["x"], exe=None, python_version=None, started_at=0.0)
    w.add_samples(_rows(pid, 5, 1e9, 5))
    w.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT n FROM sample_chunks").fetchall() == [(5,)]
    conn.execute("UPDATE sample_chunks SET n = ?", (n,))
    conn.commit()
    conn.close()
    # WHEN it is read THEN a one-line recording error, before any array is sized by it
    with pytest.raises(RecordingError, match=message):
        open_recording(path).columns()


def test_tree_sums_in_slices_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from memscope.analysis import totals

    rng = np.random.default_rng(9)
    pid = np.repeat(np.arange(7, dtype=np.int64), 40)
    t = np.tile(np.arange(40, dtype=np.float64), 7) + np.repeat(rng.integers(0, 5, 7), 40)
    pss = np.where(rng.random(pid.size) < 0.3, rng.integers(1, 1000, pid.size), np.nan)
    ticks, whole = totals.tree_sums(pid, t, {"pss": pss})
    monkeypatch.setattr(totals, "SLICE_ROWS", 3)
    ticks2, sliced = totals.tree_sums(pid, t, {"pss": pss})
    assert ticks.tolist() == ticks2.tolist() and whole["pss"].tolist() == sliced["pss"].tolist()
    # by hand: at each tick, every process sampled then adds its latest pss so far (0 if none)
    expect = {}
    for p in range(7):
        last = 0.0
        for i in np.flatnonzero(pid == p):
            last = pss[i] if pss[i] == pss[i] else last
            expect[t[i]] = expect.get(t[i], 0.0) + last
    assert whole["pss"].tolist() == [expect[k] for k in ticks.tolist()]


def test_decoding_many_chunks_with_absent_columns_in_some() -> None:
    chunks = [([1e9, 1e9 + 0.2], [[5, 6]] * NCOL),
              ([1e9 + 0.4], [[None]] * NCOL),
              ([1e9 + 0.6, 1e9 + 0.8, 1e9 + 1.0], [[7, None, 9]] * NCOL)]
    f = decode_chunks([encode_chunk(t, c) for t, c in chunks], SAMPLE_COLUMNS, ["pss", "rss"])
    assert f.counts == [2, 1, 3]
    assert f.t.tolist() == [1e9, 1e9 + 0.2, 1e9 + 0.4, 1e9 + 0.6, 1e9 + 0.8, 1e9 + 1.0]
    got = [None if v != v else v for v in f.values["pss"].tolist()]
    assert got == [5, 6, None, 7, None, 9]


def test_a_reader_sees_one_snapshot_while_the_writer_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a recording being written, with CHUNK_ROWS - 1 plain rows committed
    import memscope.sample_store as store

    path = str(tmp_path / "live.memscope")
    w = RecordingWriter(path, {})
    pid = w.add_process(pid=1, start_ticks=1, ppid=0, parent_id=None, role="root",
                        cmdline=["x"], exe=None, python_version=None, started_at=0.0)
    rows = _rows(pid, CHUNK_ROWS + 10, 1e9, 6)
    w.add_samples(rows[:CHUNK_ROWS - 1])
    w.flush()
    plain = store._plain

    def plain_then_writer_chunks(*args: object, **kw: object) -> object:
        out = plain(*args, **kw)  # type: ignore[arg-type]
        # WHEN the writer turns those plain rows into a chunk between the reader's queries
        w.add_samples(rows[CHUNK_ROWS - 1:])
        w.flush()
        return out

    monkeypatch.setattr(store, "_plain", plain_then_writer_chunks)
    cols = open_recording(path).columns(("rss",))
    # THEN the reader saw one snapshot: the committed rows, once each
    assert len(cols) == CHUNK_ROWS - 1 == len(np.unique(cols.t))
    monkeypatch.setattr(store, "_plain", plain)
    w.close()
    assert len(open_recording(path).columns(("rss",))) == len(rows)
