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

from memscope._malloc import return_freed_buffers
from memscope.errors import RecordingError
from memscope.sample_codec import decode_chunks, encode_chunk

__all__ = ["CHUNK_DDL", "CHUNK_ROWS", "DERIVED", "Chunker", "SampleColumns", "read_columns"]

#: Samples per chunk: ~50 s at the default 0.2 s interval; a steady process's chunk is then
#: ~1 KB, so SQLite's 4 KiB pages hold 3-4 of them with little slack (bench/bench_storage.py).
CHUNK_ROWS = 256
#: Chunks decoded at once when reading.
BATCH = 256
#: Columns a reader may ask for that are sums of stored ones (NaN if a term is absent).
DERIVED = {"shared": ("shared_clean", "shared_dirty")}
CHUNK_DDL = [
    """CREATE TABLE IF NOT EXISTS sample_layouts (
        id INTEGER PRIMARY KEY,
        columns TEXT NOT NULL UNIQUE
    )""",
    """CREATE TABLE IF NOT EXISTS sample_chunks (
        process_id INTEGER NOT NULL REFERENCES processes(id),
        t0 REAL NOT NULL,
        t1 REAL NOT NULL,
        n INTEGER NOT NULL,
        layout INTEGER NOT NULL REFERENCES sample_layouts(id),
        data BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sample_chunks_by_process ON sample_chunks (process_id, t0)",
]

#: Allocations from this size on are mmapped, and unmapped when freed: a report's columns
#: (8 bytes x samples: 16 MB for 2 million samples) and larger temporaries.
MMAP_THRESHOLD = 8 << 20
_MALLOPT_DONE = False
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
        layout = ",".join(self.columns)
        conn.execute("INSERT OR IGNORE INTO sample_layouts (columns) VALUES (?)", (layout,))
        self.layout = conn.execute(
            "SELECT id FROM sample_layouts WHERE columns = ?", (layout,)
        ).fetchone()[0]
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
            old = self.pending.setdefault(process_id, [])
            if len(old) + len(new) < self.chunk_rows:
                plain.extend(new)
                old.extend(new)  # in place: a tick costs O(its rows), not O(pending)
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
            "INSERT INTO sample_chunks (process_id, t0, t1, n, layout, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (process_id, min(t), max(t), len(rows), self.layout, encode_chunk(t, columns)),
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

    def of(self, process_id: int) -> SampleColumns:
        """The rows of one process (views, in time order)."""
        lo, hi = np.searchsorted(self.process_id, [process_id, process_id + 1])
        return SampleColumns(self.process_id[lo:hi], self.t[lo:hi],
                             {n: v[lo:hi] for n, v in self.values.items()})


def _has_chunks(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sample_chunks'"
    ).fetchone()
    return row is not None


def _plain(
    conn: sqlite3.Connection, names: Sequence[str], where: str, params: tuple[Any, ...]
) -> tuple[I64, F64, dict[str, F64]]:
    cols = "".join(f", IFNULL({' + '.join(DERIVED.get(n, (n,)))}, -1)" for n in names)
    rows = conn.execute(
        f"SELECT process_id, t{cols} FROM samples{where} ORDER BY process_id, t", params
    ).fetchall()
    arr = np.array(rows, dtype=np.float64).reshape(len(rows), 2 + len(names))
    values: dict[str, F64] = {}
    for i, name in enumerate(names):
        col = arr[:, 2 + i].copy()
        col[col < 0] = np.nan
        values[name] = col
    return arr[:, 0].astype(np.int64), arr[:, 1].copy(), values


def _return_big_arrays_to_the_system() -> None:
    """glibc raises its mmap threshold after the first big free, so later column-sized arrays
    come from the heap and their memory stays with the process after use; a fixed threshold
    (MMAP_THRESHOLD) hands each one back when freed (reports hold several 16 MB temporaries).

    A fixed threshold also fixes glibc's trim threshold at its 128 KiB default, so a smaller
    temporary freed at the top of the heap goes back to the system too and the next one
    faults its pages in again: with the chunk decoder's and Theil-Sen's temporaries, a
    200 x 10,000 report took up to 240,000 minor page faults (~1 GB), a third of its CPU
    time, against ~22,000 with this. The trim threshold is twice the mmap threshold, as
    glibc's own adjustment sets it: the heap keeps up to 16 MiB of freed memory for reuse."""
    global _MALLOPT_DONE
    if _MALLOPT_DONE:
        return
    _MALLOPT_DONE = True
    return_freed_buffers(MMAP_THRESHOLD)  # (not glibc: nothing to tune)


def read_columns(
    conn: sqlite3.Connection, names: Sequence[str], process_id: int | None = None
) -> SampleColumns:
    """Samples of one process or of all, as columns `names`.

    Chunks are decoded BATCH chunks at a time straight into preallocated arrays, so the peak
    memory is the result plus one batch; the plain rows (few, unless schema 1) follow. All
    reads share one read transaction: a recording still being written moves rows from plain
    to chunks, and two snapshots could see a sample twice or not at all."""
    _return_big_arrays_to_the_system()
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        return _read_columns(conn, names, process_id)
    finally:
        if own and conn.in_transaction:
            conn.execute("COMMIT")


def _read_columns(
    conn: sqlite3.Connection, names: Sequence[str], process_id: int | None
) -> SampleColumns:
    where, params = ("", ()) if process_id is None else (" WHERE process_id = ?", (process_id,))
    plain_pid, plain_t, plain_values = _plain(conn, names, where, params)
    chunked = 0
    if _has_chunks(conn):
        chunked, bad = conn.execute(
            f"SELECT IFNULL(SUM(n), 0), IFNULL(SUM(typeof(n) != 'integer' OR n < 1 OR n > ?), 0)"
            f" FROM sample_chunks{where}", (CHUNK_ROWS, *params),
        ).fetchone()
        if bad:  # checked before sizing the arrays by these counts
            raise RecordingError(f"{bad} sample chunk(s) have a row count outside 1..{CHUNK_ROWS}")
    total = chunked + plain_pid.size
    pid = np.empty(total, dtype=np.int64)
    t = np.empty(total)
    values = {n: np.empty(total) for n in names}
    pos = 0
    if chunked:
        cursor = conn.execute(
            "SELECT process_id, columns, data FROM sample_chunks JOIN sample_layouts"
            f" ON layout = sample_layouts.id{where} ORDER BY process_id, t0", params,
        )
        while batch := cursor.fetchmany(BATCH):
            for layout, items in _by_layout(batch).items():
                stored = layout.split(",")
                wanted = {c for n in names for c in DERIVED.get(n, (n,)) if c in stored}
                try:
                    fields = decode_chunks([d for _, d in items], stored, sorted(wanted))
                except (zlib.error, struct.error, ValueError, IndexError, KeyError) as exc:
                    raise RecordingError(f"a sample chunk is corrupt ({exc})") from None
                end = pos + fields.t.size
                if end > chunked:
                    raise RecordingError("sample chunks hold more rows than their row counts")
                pid[pos:end] = np.repeat([p for p, _ in items], fields.counts)
                t[pos:end] = fields.t
                for n in names:
                    values[n][pos:end] = _value(fields.values, n)
                pos = end
    if pos != chunked:  # fewer decoded rows than counted, or chunks without their layout
        raise RecordingError("sample chunks hold fewer rows than their row counts")
    pid[pos:], t[pos:] = plain_pid, plain_t
    for n in names:
        values[n][pos:] = plain_values[n]
    if pos == 0 or pos == total or _sorted(pid, t):
        return SampleColumns(pid, t, values)
    order = np.lexsort((t, pid))
    return SampleColumns(pid[order], t[order], {n: v[order] for n, v in values.items()})


def _value(decoded: dict[str, F64], name: str) -> F64 | float:
    terms = DERIVED.get(name, (name,))
    if not all(t in decoded for t in terms):
        return np.nan
    total = decoded[terms[0]]
    for term in terms[1:]:
        total = total + decoded[term]
    return total


def _by_layout(rows: list[tuple[int, str, bytes]]) -> dict[str, list[tuple[int, bytes]]]:
    grouped: dict[str, list[tuple[int, bytes]]] = {}
    for pid, layout, data in rows:
        grouped.setdefault(layout, []).append((pid, data))
    return grouped


def _sorted(pid: I64, t: F64) -> bool:
    """(pid, t) non-decreasing: chunks were read in order, and the plain rows (the newest,
    ordered too) need no merge when there are none or they follow within each process."""
    if pid.size < 2:
        return True
    dp = np.diff(pid)
    return bool(np.all(dp >= 0) and np.all((dp > 0) | (np.diff(t) >= 0)))
