"""The vectorised chunk decoder against the per-chunk one it replaced (sample_codec before
issue 15's report speed-up, kept here verbatim as the reference), on the chunks of real
recordings and on damaged copies of them."""

from __future__ import annotations

import shutil
import sqlite3
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from memscope.errors import RecordingError
from memscope.recording import REPORT_COLUMNS, open_recording
from memscope.sample_codec import _DTYPES, decode_chunks
from memscope.sample_store import DERIVED

RECORDINGS = Path(__file__).parents[1] / "data" / "recordings"
# a real `memscope run -i 0.02 --duration 25 -- python fixtures/leaky_worker.py` (schema 3):
# 5 processes, 15 chunks, rollups on ~35% of the ticks (presence bitmaps), int8..int64 deltas
LEAKY = RECORDINGS / "schema3-leaky_worker.memscope"
PRELOAD = RECORDINGS / "schema2-preload_list.memscope"  # a real run, schema 2, no bitmaps
# what the reference decoder raised on damage (sample_store turns these into RecordingError)
DAMAGE = (zlib.error, struct.error, ValueError, IndexError, KeyError)
_HEADER = struct.Struct("<IB")
_FIELD = struct.Struct("<BI")


# ---- the reference: memscope/sample_codec.py's decode_chunks at f93bc6f, verbatim ----

def _reference_prefix_sums(deltas: Any, lengths: Any, order: int) -> Any:
    starts = (np.cumsum(lengths) - lengths)[lengths > 0]
    out = deltas
    for _ in range(order):
        adjusted = out.copy()
        if starts.size > 1:
            adjusted[starts[1:]] -= np.add.reduceat(out, starts)[:-1]
        out = np.cumsum(adjusted, dtype=np.int64)
    return out


def reference_decode(
    blobs: Sequence[bytes], names: Sequence[str], wanted: Sequence[str]
) -> tuple[Any, dict[str, Any], list[int]]:
    index = {name: i + 1 for i, name in enumerate(names)}
    slots = [0] + [index[w] for w in wanted]
    pieces: list[list[Any]] = [[] for _ in slots]
    masks: list[list[Any]] = [[] for _ in slots]
    counts: list[int] = []
    for blob in blobs:
        raw = zlib.decompress(blob)
        n, fields = _HEADER.unpack_from(raw)
        counts.append(n)
        pos = _HEADER.size
        found: dict[int, tuple[Any, Any]] = {}
        for field in range(fields):
            flags, count = _FIELD.unpack_from(raw, pos)
            pos += _FIELD.size
            mask = None
            if flags & 1:
                nbytes = (n + 7) // 8
                if field in slots:
                    bits = np.frombuffer(raw, np.uint8, nbytes, pos)
                    mask = np.unpackbits(bits, count=n).astype(bool)
                pos += nbytes
            dtype = _DTYPES[flags >> 4]
            if field in slots:
                data = np.frombuffer(raw, dtype, count, pos).copy()
                found[field] = (mask, data)
            pos += count * dtype.itemsize
        for k, slot in enumerate(slots):
            mask, data = found.get(slot, (np.zeros(n, dtype=bool), np.zeros(0, np.int64)))
            pieces[k].append(data)
            masks[k].append(mask)
    total = sum(counts)
    decoded: list[Any] = []
    for k in range(len(slots)):
        if not blobs:
            decoded.append(np.zeros(0))
            continue
        lengths = np.array([p.size for p in pieces[k]], dtype=np.int64)
        deltas = np.concatenate(pieces[k]).astype(np.int64)
        ints = _reference_prefix_sums(deltas, lengths, 2 if k == 0 else 1)
        if k == 0:
            decoded.append(ints.view(np.float64))
            continue
        if all(m is None for m in masks[k]):
            decoded.append(ints.astype(np.float64))
            continue
        present = np.concatenate([
            np.ones(c, dtype=bool) if m is None else m
            for m, c in zip(masks[k], counts, strict=True)
        ])
        out = np.full(total, np.nan)
        out[present] = ints
        decoded.append(out)
    return decoded[0], dict(zip(wanted, decoded[1:], strict=True)), counts


# ---- helpers ----

def _chunks(path: Path) -> tuple[list[str], list[bytes]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT columns, data FROM sample_chunks JOIN sample_layouts ON layout ="
        " sample_layouts.id ORDER BY process_id, t0"
    ).fetchall()
    conn.close()
    assert len({r[0] for r in rows}) == 1
    return rows[0][0].split(","), [r[1] for r in rows]


def _same(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _assert_identical(blobs: Sequence[bytes], names: Sequence[str], wanted: Sequence[str]) -> None:
    t, values, counts = reference_decode(blobs, names, wanted)
    got = decode_chunks(blobs, names, wanted)
    assert got.counts == counts
    assert _same(got.t, t)  # bit for bit: NaN where absent, -0.0, the float times
    assert list(got.values) == list(values)
    for name in wanted:
        assert _same(got.values[name], values[name]), name


def _reference_consistent(blobs: Sequence[bytes], names: Sequence[str],
                          wanted: Sequence[str]) -> bool:
    """The reference decodes each chunk alone, each column as long as the chunk's row count
    (else its batch output was misaligned: a column shorter or longer than `t`, or values
    shifted into another chunk's samples)."""
    try:
        for blob in blobs:
            t, values, counts = reference_decode([blob], names, wanted)
            if t.size != counts[0] or any(v.size != counts[0] for v in values.values()):
                return False
    except DAMAGE:
        return False
    return True


# ---- equal on real recordings ----

@pytest.mark.parametrize("path", [LEAKY, PRELOAD], ids=["leaky_worker", "preload_list"])
def test_decoder_equals_the_per_chunk_reference_on_real_recordings(path: Path) -> None:
    names, blobs = _chunks(path)
    for wanted in (names, sorted({c for n in REPORT_COLUMNS for c in DERIVED.get(n, (n,))}),
                   ["rss"], [], names[::-1]):
        _assert_identical(blobs, names, wanted)
        for size in (1, 2, 7):  # batches of any size, as read_columns cuts them
            for lo in range(0, len(blobs), size):
                _assert_identical(blobs[lo:lo + size], names, wanted)
    _assert_identical([], names, names)


def test_the_leaky_recording_has_bitmaps_and_every_delta_width() -> None:
    _, blobs = _chunks(LEAKY)
    flags = set()
    for blob in blobs:
        raw = zlib.decompress(blob)
        n, fields = _HEADER.unpack_from(raw)
        pos = _HEADER.size
        for _ in range(fields):
            flag, count = _FIELD.unpack_from(raw, pos)
            flags.add(flag)
            pos += _FIELD.size + (n + 7) // 8 * (flag & 1) + count * _DTYPES[flag >> 4].itemsize
        assert pos == len(raw)
    assert any(f & 1 for f in flags)  # presence bitmaps (rollups skipped on some ticks)
    assert {f >> 4 for f in flags} >= {0, 2, 3}  # int8, int32 and int64 deltas


def test_read_columns_of_a_real_recording_is_unchanged_by_batch_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from memscope import sample_store

    rec = open_recording(str(LEAKY))
    whole = rec.columns(("rss", "uss", "shared", "swap"))
    for batch in (1, 3):
        monkeypatch.setattr(sample_store, "BATCH", batch)
        rec2 = open_recording(str(LEAKY))
        cols = rec2.columns(("rss", "uss", "shared", "swap"))
        assert _same(cols.process_id, whole.process_id) and _same(cols.t, whole.t)
        assert all(_same(cols.values[k], whole.values[k]) for k in whole.values)
        rec2.close()
    rec.close()


# ---- damage: raises where the reference raised, or where its output was misaligned ----

def _fields(raw: bytes) -> list[tuple[int, int, int]]:
    """(header offset, flags, count) of each field of an undamaged chunk."""
    n, fields = _HEADER.unpack_from(raw)
    pos, out = _HEADER.size, []
    for _ in range(fields):
        flag, count = _FIELD.unpack_from(raw, pos)
        out.append((pos, flag, count))
        pos += _FIELD.size + (n + 7) // 8 * (flag & 1) + count * _DTYPES[flag >> 4].itemsize
    return out


def _damage(raw: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(raw)
    fields = _fields(raw)
    kind = int(rng.integers(0, 8))
    at, flag, count = fields[int(rng.integers(0, len(fields)))]
    if kind == 0:  # the row count
        struct.pack_into("<I", data, 0, max(0, _HEADER.unpack_from(raw)[0]
                                            + int(rng.integers(-3, 4))))
    elif kind == 1:  # the field count
        data[4] = int(rng.integers(0, 20))
    elif kind == 2:  # a field's value count
        struct.pack_into("<I", data, at + 1, max(0, count + int(rng.integers(-2, 3))))
    elif kind == 3:  # a field's bitmap flag
        data[at] = flag ^ 1
    elif kind == 4:  # a field's dtype code, any of 16
        data[at] = (flag & 0x0F) | int(rng.integers(0, 16)) << 4
    elif kind == 5:  # truncated
        del data[int(rng.integers(0, len(data))):]
    elif kind == 6:  # trailing bytes
        data += bytes(rng.integers(0, 256, int(rng.integers(1, 9))).tolist())
    else:  # any byte
        data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    return bytes(data)


@pytest.mark.parametrize("path", [LEAKY, PRELOAD], ids=["leaky_worker", "preload_list"])
def test_damaged_chunks_raise_as_the_reference_did_or_stricter(path: Path) -> None:
    names, blobs = _chunks(path)
    rng = np.random.default_rng(15)
    outcomes = {"equal": 0, "raised": 0, "stricter": 0}
    for _ in range(600):
        batch = list(blobs)
        k = int(rng.integers(0, len(batch)))
        batch[k] = zlib.compress(_damage(zlib.decompress(batch[k]), rng))
        wanted = names if rng.random() < 0.5 else sorted(
            rng.choice(names, int(rng.integers(1, len(names))), replace=False).tolist())
        try:
            reference_decode(batch, names, wanted)
            reference_raised = False
        except DAMAGE:
            reference_raised = True
        if not reference_raised and _reference_consistent(batch, names, wanted):
            _assert_identical(batch, names, wanted)  # damage the decoding does not see
            outcomes["equal"] += 1
            continue
        with pytest.raises((zlib.error, ValueError)):
            decode_chunks(batch, names, wanted)
        outcomes["stricter" if not reference_raised else "raised"] += 1
    # every branch was taken: undetectable damage, damage both reject, and misaligned output
    # the reference returned (a value count that disagrees with the rows) that is now refused
    assert min(outcomes.values()) > 10, outcomes


def test_a_damaged_chunk_in_a_real_recording_is_a_one_line_recording_error(
    tmp_path: Path,
) -> None:
    # GIVEN a copy of a real recording whose second chunk stores one rss_shared value fewer
    # than its rows (the last field: every header still parses; the reference decoded it
    # into a column shorter than its times, and read_columns failed on the copy)
    path = tmp_path / "r.memscope"
    shutil.copy(LEAKY, path)
    conn = sqlite3.connect(path)
    rowid, blob = conn.execute("SELECT rowid, data FROM sample_chunks ORDER BY rowid"
                               " LIMIT 1 OFFSET 1").fetchone()
    raw = bytearray(zlib.decompress(blob))
    at, flag, count = _fields(bytes(raw))[-1]
    assert not flag & 1  # statm: every tick, no bitmap
    struct.pack_into("<I", raw, at + 1, count - 1)
    del raw[len(raw) - _DTYPES[flag >> 4].itemsize:]
    conn.execute("UPDATE sample_chunks SET data = ? WHERE rowid = ?",
                 (zlib.compress(bytes(raw)), rowid))
    conn.commit()
    conn.close()
    # WHEN the report's columns are read THEN one line, naming what is wrong
    rec = open_recording(str(path))
    with pytest.raises(RecordingError) as err:
        rec.columns()
    rec.close()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("a sample chunk is corrupt (") and "row count" in message
