"""Compact sample chunks: one process's samples as delta-encoded numpy columns in one BLOB.

A chunk holds `n` consecutive samples of one process (docs/recording.md, "sample_chunks"):

    u32 n, u8 field count, then per field (t first, then SAMPLE_COLUMNS in order):
        u8 flags (bit 0: a presence bitmap follows; bits 4-7: dtype code), u32 present count,
        [presence bitmap: ceil(n / 8) bytes, numpy.packbits order], present values

the whole zlib-compressed. Values are integers, stored as deltas from the previous present
value (the first as is) in the narrowest of int8/16/32/64 that holds them. `t` is stored
losslessly as the int64 bit pattern of its float64, second-order deltas: samples one interval
apart give the same first-order delta, so only the sampler's jitter is left. Integer wrap-around
in the deltas is harmless: the prefix sums that decode them wrap back (two's complement).

Decoding is batched: every chunk's field arrays are concatenated and prefix-summed at once,
so a report over millions of samples makes no Python object per sample.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ChunkFields", "decode_chunks", "encode_chunk"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
_DTYPES: tuple[np.dtype[Any], ...] = (
    np.dtype("<i1"), np.dtype("<i2"), np.dtype("<i4"), np.dtype("<i8")
)
_LIMITS = tuple((int(np.iinfo(d).min), int(np.iinfo(d).max)) for d in _DTYPES)
_HEADER = struct.Struct("<IB")
_FIELD = struct.Struct("<BI")
_T_ORDER = 2  # second-order deltas for time, first-order for values


def _deltas(values: I64, order: int) -> I64:
    out = values
    for _ in range(order):
        out = np.diff(out, prepend=np.int64(0))
    return out


def _undeltas(values: I64, order: int) -> I64:
    out = values
    for _ in range(order):
        out = np.cumsum(out, dtype=np.int64)
    return out


def _narrow(values: I64) -> tuple[int, bytes]:
    if values.size == 0:
        return 0, b""
    lo, hi = int(values.min()), int(values.max())
    for code, (low, high) in enumerate(_LIMITS):
        if low <= lo and hi <= high:
            return code, values.astype(_DTYPES[code]).tobytes()
    raise AssertionError("int64 always fits")  # pragma: no cover


def encode_chunk(t: Sequence[float], columns: Sequence[Sequence[int | None]]) -> bytes:
    """One chunk from `t` (float seconds) and equally long columns (ints, None where absent)."""
    n = len(t)
    parts = [_HEADER.pack(n, 1 + len(columns))]
    t_bits = np.asarray(t, dtype=np.float64).view(np.int64)
    code, data = _narrow(_deltas(t_bits, _T_ORDER))
    parts += [_FIELD.pack(code << 4, n), data]
    for column in columns:
        present = np.fromiter((v is not None for v in column), dtype=bool, count=n)
        count = int(present.sum())
        values = np.fromiter((v for v in column if v is not None), dtype=np.int64, count=count)
        code, data = _narrow(_deltas(values, 1))
        if count == n:
            parts += [_FIELD.pack(code << 4, count), data]
        else:
            parts += [_FIELD.pack(code << 4 | 1, count), np.packbits(present).tobytes(), data]
    return zlib.compress(b"".join(parts), 9)


def _segment_prefix_sums(values: I64, lengths: I64) -> I64:
    """Prefix sums of `values`, in place, restarting at every segment (`lengths`, one per
    chunk and field) in one cumsum: the first delta of a segment is lowered by the sum of the
    segment before it. Exact: int64 wraps around both ways."""
    starts = (np.cumsum(lengths) - lengths)[lengths > 0]
    if starts.size > 1:
        values[starts[1:]] -= np.add.reduceat(values, starts)[:-1]
    return np.cumsum(values, out=values)


@dataclass(frozen=True, slots=True)
class ChunkFields:
    """Decoded chunks, concatenated: `t` and each requested column (NaN where absent)."""

    t: F64
    values: dict[str, F64]
    counts: list[int]  # samples per chunk, in input order


@dataclass(frozen=True, slots=True)
class _Field:
    """Where one field lies in each chunk of a batch (arrays indexed by chunk)."""

    stored: npt.NDArray[np.bool_]  # the chunk has this field (it may have fewer fields)
    mask_at: I64  # offset of its presence bitmap in the joined buffer, -1 without one
    data_at: I64  # offset of its values
    count: I64  # values stored (0 where not stored)
    code: I64  # dtype code of its values


def _ranges(starts: I64, lengths: I64) -> I64:
    """Concatenated ranges starts[i] .. starts[i] + lengths[i] - 1, in one pass."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]) if
                                                                     ends.size else 0)


def _u32(buf: npt.NDArray[np.uint8], at: I64) -> I64:
    """Little-endian u32 at each offset `at` (each in bounds)."""
    b = buf[at[:, None] + np.arange(4)].astype(np.int64)
    value: I64 = b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16 | b[:, 3] << 24
    return value


def _walk(
    buf: npt.NDArray[np.uint8], base: I64, end: I64, slots: Sequence[int]
) -> tuple[I64, dict[int, _Field]]:
    """Every chunk's row count and where its fields `slots` lie: the field headers of all
    chunks are read field by field, one vector step per field (not per chunk). Damage raises
    ValueError: a header or a wanted field's bitmap or values past the end of its chunk, an
    unknown dtype code."""
    if np.any(end - base < _HEADER.size):
        raise ValueError("chunk header truncated")
    n = _u32(buf, base)
    fields = buf[base + 4].astype(np.int64)
    mask_bytes = (n + 7) // 8
    pos = base + _HEADER.size
    found: dict[int, _Field] = {}
    for field in range(int(fields.max(initial=0))):
        stored = field < fields
        if np.any(stored & (pos + _FIELD.size > end)):
            raise ValueError("field header truncated")
        at = np.where(stored, pos, base)  # a chunk without this field reads its own header
        flags = buf[at].astype(np.int64)
        count = np.where(stored, _u32(buf, at + 1), 0)
        code = flags >> 4
        if np.any(stored & (code >= len(_DTYPES))):
            raise ValueError("unknown value type in a chunk")
        itemsize = np.left_shift(1, np.minimum(code, len(_DTYPES) - 1))
        masked = stored & (flags & 1 == 1)
        pos = np.where(stored, pos + _FIELD.size, pos)
        data_at = pos + np.where(masked, mask_bytes, 0)
        if field in slots:
            if np.any(stored & (data_at + count * itemsize > end)):
                raise ValueError("chunk values truncated")  # the bitmap precedes them
            found[field] = _Field(stored, np.where(masked, pos, -1), data_at, count, code)
        pos = np.where(stored, data_at + count * itemsize, pos)
    return n, found


def _values(joined: bytes, fields: Sequence[_Field], lengths: I64) -> I64:
    """The stored values of `fields`, concatenated field by field and chunk by chunk, as
    int64: each (chunk, field) run of values is a view of `joined` in its stored width, and
    one concatenate widens and joins them all (faster than an index gather: no index array
    per value)."""
    keep = lengths > 0
    data_at = np.concatenate([f.data_at for f in fields])[keep].tolist()
    code = np.concatenate([f.code for f in fields])[keep].tolist()
    views = [np.frombuffer(joined, _DTYPES[c], k, at)
             for at, k, c in zip(data_at, lengths[keep].tolist(), code, strict=True)]
    return np.concatenate(views, dtype=np.int64) if views else np.zeros(0, dtype=np.int64)


def _presence(
    buf: npt.NDArray[np.uint8], f: _Field, n: I64
) -> tuple[npt.NDArray[np.bool_] | None, I64]:
    """(present, per chunk how many) of one field: None when every chunk stores every sample
    (no bitmap); a chunk without the field has none present."""
    has_mask = f.mask_at >= 0
    if f.stored.all() and not has_mask.any():
        return None, n
    present = np.repeat(f.stored & ~has_mask, n)
    if has_mask.any():
        nm = n[has_mask]
        nbytes = (nm + 7) // 8
        bits = np.unpackbits(buf[_ranges(f.mask_at[has_mask], nbytes)])
        # each chunk's bitmap is padded to whole bytes: keep its first n bits
        bit_at = np.cumsum(8 * nbytes) - 8 * nbytes
        bits = bits[_ranges(bit_at, nm)].astype(bool)
        starts = np.cumsum(n) - n
        present[_ranges(starts[has_mask], nm)] = bits
    ends = np.cumsum(n)
    summed = np.concatenate([[0], np.cumsum(present, dtype=np.int64)])
    return present, summed[ends] - summed[ends - n]


def decode_chunks(
    blobs: Sequence[bytes], names: Sequence[str], wanted: Sequence[str]
) -> ChunkFields:
    """Decode `blobs` (each holding t then the columns `names`), keeping the columns `wanted`.

    Vectorised over the chunks: they are decompressed and joined into one buffer, and each
    step after that (reading the field headers, gathering the values, prefix-summing them,
    spreading them over their presence bitmaps) is a numpy operation over every chunk at
    once. Damage raises zlib.error or ValueError, including a field whose value count does
    not match its chunk's row count (or the samples its bitmap marks present)."""
    index = {name: i + 1 for i, name in enumerate(names)}
    slots = [0] + [index[w] for w in wanted]
    if not blobs:
        return ChunkFields(np.zeros(0), {w: np.zeros(0) for w in wanted}, [])
    raws = [zlib.decompress(blob) for blob in blobs]
    joined = b"".join(raws)
    buf = np.frombuffer(joined, np.uint8)
    sizes = np.fromiter(map(len, raws), np.int64, len(raws))
    del raws
    end = np.cumsum(sizes)
    n, found = _walk(buf, end - sizes, end, slots)
    missing = _Field(np.zeros(n.size, dtype=bool), np.full(n.size, -1), np.zeros_like(n),
                     np.zeros_like(n), np.zeros_like(n))
    fields = [found.get(slot, missing) for slot in slots]
    if np.any(fields[0].count != n):  # checked first: `n` sizes every array below
        raise ValueError("a chunk's times do not match its row count")
    presence = [_presence(buf, f, n) for f in fields[1:]]
    for f, (_, count) in zip(fields[1:], presence, strict=True):
        if np.any(f.count != count):
            raise ValueError("a chunk's values do not match its row count or bitmap")
    lengths = np.concatenate([f.count for f in fields])
    deltas = _values(joined, fields, lengths)
    ints = _segment_prefix_sums(deltas, lengths)  # first order, every field at once
    split = np.cumsum([f.count.sum() for f in fields])
    t_bits = ints[:split[0]]
    for _ in range(_T_ORDER - 1):
        _segment_prefix_sums(t_bits, n)
    t = t_bits.view(np.float64)
    decoded: dict[str, F64] = {}
    for k, name in enumerate(wanted):
        column = ints[split[k]:split[k + 1]]
        present = presence[k][0]
        if present is None:
            decoded[name] = column.astype(np.float64)
            continue
        out = np.full(present.size, np.nan)
        out[present] = column
        decoded[name] = out
    return ChunkFields(t, decoded, n.tolist())
