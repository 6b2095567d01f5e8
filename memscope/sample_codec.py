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


@dataclass(frozen=True, slots=True)
class ChunkFields:
    """Decoded chunks, concatenated: `t` and each requested column (NaN where absent)."""

    t: F64
    values: dict[str, F64]
    counts: list[int]  # samples per chunk, in input order


def _segment_prefix_sums(deltas: I64, lengths: I64, order: int) -> I64:
    """Prefix sums restarting at every segment (one per chunk), `order` times, one cumsum
    each: the first delta of a segment is lowered by the sum of the segment before it."""
    starts = (np.cumsum(lengths) - lengths)[lengths > 0]
    out = deltas
    for _ in range(order):
        adjusted = out.copy()
        if starts.size > 1:
            adjusted[starts[1:]] -= np.add.reduceat(out, starts)[:-1]
        out = np.cumsum(adjusted, dtype=np.int64)
    return out


def decode_chunks(
    blobs: Sequence[bytes], names: Sequence[str], wanted: Sequence[str]
) -> ChunkFields:
    """Decode `blobs` (each holding t then the columns `names`), keeping the columns `wanted`."""
    index = {name: i + 1 for i, name in enumerate(names)}
    slots = [0] + [index[w] for w in wanted]
    pieces: list[list[npt.NDArray[np.signedinteger[Any]]]] = [[] for _ in slots]
    masks: list[list[npt.NDArray[np.bool_] | None]] = [[] for _ in slots]
    counts: list[int] = []
    for blob in blobs:
        raw = zlib.decompress(blob)
        n, fields = _HEADER.unpack_from(raw)
        counts.append(n)
        pos = _HEADER.size
        found: dict[int, tuple[npt.NDArray[np.bool_] | None, npt.NDArray[Any]]] = {}
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
                data = np.frombuffer(raw, dtype, count, pos).copy()  # let `raw` go
                found[field] = (mask, data)
            pos += count * dtype.itemsize
        for k, slot in enumerate(slots):
            mask, data = found.get(slot, (np.zeros(n, dtype=bool), np.zeros(0, np.int64)))
            pieces[k].append(data)
            masks[k].append(mask)
    total = sum(counts)
    decoded: list[F64] = []
    for k in range(len(slots)):
        if not blobs:
            decoded.append(np.zeros(0))
            continue
        lengths = np.array([p.size for p in pieces[k]], dtype=np.int64)
        deltas = np.concatenate(pieces[k]).astype(np.int64)
        pieces[k] = []
        ints = _segment_prefix_sums(deltas, lengths, _T_ORDER if k == 0 else 1)
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
    return ChunkFields(decoded[0], dict(zip(wanted, decoded[1:], strict=True)), counts)
