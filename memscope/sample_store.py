"""Where samples live in a recording: compact chunks, plus the newest ones as plain rows.

Writing (schema 2): every sample is inserted as a plain row of `samples` in the transaction the
writer commits every flush (0.5 s), so a SIGKILL loses at most the uncommitted batch. Once a
process has `CHUNK_ROWS` samples pending, they are encoded into one `sample_chunks` row
(memscope.sample_codec) and their plain rows deleted, in the same transaction: a sample is
always in exactly one of the two tables. A process's pending rows are also chunked when it
exits, and every process's when the recording is closed.

Reading: `read_columns` returns every sample as numpy columns sorted by (process_id, t),
decoding the chunks in one batch and appending the plain rows (all of them in a schema-1
recording, which has no chunks).
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from memscope.errors import RecordingError
from memscope.sample_codec import decode_chunks, encode_chunk

__all__ = ["CHUNK_DDL", "CHUNK_ROWS", "Chunker", "SampleColumns", "read_columns"]

#: Samples per chunk: ~100 s at the default 0.2 s interval.
CHUNK_ROWS = 512
CHUNK_DDL = [
    """CREATE TABLE IF NOT EXISTS sample_chunks (
        process_id INTEGER NOT NULL REFERENCES processes(id),
        t0 REAL NOT NULL,
        t1 REAL NOT NULL,
        n INTEGER NOT NULL,
        columns TEXT NOT NULL,
        data BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sample_chunks_by_process ON sample_chunks (process_id, t0)",
]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Row = tuple[Any, ...]


class Chunker:
    """The writer's side: plain rows now, chunks once a process has CHUNK_ROWS of them."""

    def __init__(self, conn: sqlite3.Connection, columns: Sequence[str], chunk_rows: int) -> None:
        self.conn = conn
        self.columns = tuple(columns)
        self.chunk_rows = chunk_rows
        self.pending: dict[int, list[Row]] = {}  # rows already in the plain table
        cols = ", ".join(self.columns)
        marks = ", ".join("?" * (2 + len(self.columns)))
        self._insert = f"INSERT INTO samples (process_id, t, {cols}) VALUES ({marks})"

    def add(self, rows: Iterable[Row]) -> None:
        """Rows are (process_id, t, *columns), each process's in time order."""
        fresh: dict[int, list[Row]] = {}
        for row in rows:
            fresh.setdefault(row[0], []).append(row)
        plain: list[Row] = []
        for process_id, new in fresh.items():
            old = self.pending.get(process_id, [])
            if len(old) + len(new) < self.chunk_rows:
                plain.extend(new)
                self.pending[process_id] = old + new
                continue
            rows_all = old + new
            cut = len(rows_all) - len(rows_all) % self.chunk_rows
            for start in range(0, cut, self.chunk_rows):
                self._write_chunk(process_id, rows_all[start:start + self.chunk_rows])
            self._delete_plain(process_id, old)
            rest = rows_all[cut:]
            plain.extend(rest)
            self.pending[process_id] = rest
        self.conn.executemany(self._insert, plain)

    def seal(self, process_id: int | None = None) -> None:
        """Chunk the pending rows of one process (it exited) or of all (closing)."""
        ids = list(self.pending) if process_id is None else [process_id]
        for pid in ids:
            rows = self.pending.pop(pid, [])
            if rows:
                self._write_chunk(pid, rows)
                self._delete_plain(pid, rows)

    def _write_chunk(self, process_id: int, rows: Sequence[Row]) -> None:
        t = [r[1] for r in rows]
        columns = [[r[2 + i] for r in rows] for i in range(len(self.columns))]
        self.conn.execute(
            "INSERT INTO sample_chunks (process_id, t0, t1, n, columns, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (process_id, min(t), max(t), len(rows), ",".join(self.columns),
             encode_chunk(t, columns)),
        )

    def _delete_plain(self, process_id: int, rows: Sequence[Row]) -> None:
        if rows:
            self.conn.execute(
                "DELETE FROM samples WHERE process_id = ? AND t >= ? AND t <= ?",
                (process_id, min(r[1] for r in rows), max(r[1] for r in rows)),
            )


@dataclass(frozen=True, slots=True)
class SampleColumns:
    """Samples as columns sorted by (process_id, t); NaN where a rollup value was not taken."""

    process_id: I64
    t: F64
    values: dict[str, F64]

    def __len__(self) -> int:
        return int(self.t.size)


def _has_chunks(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sample_chunks'"
    ).fetchone()
    return row is not None


def _plain(
    conn: sqlite3.Connection, names: Sequence[str], where: str, params: tuple[Any, ...]
) -> tuple[I64, F64, dict[str, F64]]:
    cols = "".join(f", IFNULL({n}, -1)" for n in names)
    rows = conn.execute(f"SELECT process_id, t{cols} FROM samples{where}", params).fetchall()
    arr = np.array(rows, dtype=np.float64).reshape(len(rows), 2 + len(names))
    values: dict[str, F64] = {}
    for i, name in enumerate(names):
        col = arr[:, 2 + i].copy()
        col[col < 0] = np.nan
        values[name] = col
    return arr[:, 0].astype(np.int64), arr[:, 1].copy(), values


def read_columns(
    conn: sqlite3.Connection, names: Sequence[str], process_id: int | None = None
) -> SampleColumns:
    """Samples of one process or of all, as columns (only `names` among `all_names`)."""
    where, params = ("", ()) if process_id is None else (" WHERE process_id = ?", (process_id,))
    pid_parts: list[I64] = []
    t_parts: list[F64] = []
    value_parts: dict[str, list[F64]] = {n: [] for n in names}
    if _has_chunks(conn):
        rows = conn.execute(
            f"SELECT process_id, columns, data FROM sample_chunks{where}", params
        ).fetchall()
        by_layout: dict[str, list[tuple[int, bytes]]] = {}
        for pid, layout, data in rows:
            by_layout.setdefault(layout, []).append((pid, data))
        for layout, items in by_layout.items():
            stored = layout.split(",")
            have = [n for n in names if n in stored]
            try:
                fields = decode_chunks([d for _, d in items], stored, have)
            except (zlib.error, struct.error, ValueError, IndexError, KeyError) as exc:
                raise RecordingError(f"a sample chunk is corrupt ({exc})") from None
            pid_parts.append(np.repeat(np.array([p for p, _ in items], dtype=np.int64),
                                       fields.counts))
            t_parts.append(fields.t)
            for n in names:
                value_parts[n].append(fields.values.get(n, np.full(fields.t.size, np.nan)))
    pid, t, values = _plain(conn, names, where, params)
    pid_parts.append(pid)
    t_parts.append(t)
    for n in names:
        value_parts[n].append(values[n])
    all_pid = np.concatenate(pid_parts)
    all_t = np.concatenate(t_parts)
    order = np.lexsort((all_t, all_pid))
    return SampleColumns(
        all_pid[order], all_t[order],
        {n: np.concatenate(value_parts[n])[order] for n in names},
    )
