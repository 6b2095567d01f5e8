"""COW scans in a recording: the COW feature's tables, writer and readers (its only SQL).

Tables (documented in docs/cow.md and docs/recording.md; declared by memscope.features):

- cow_scans: one row per scan of one process (timeline of copied/shared/new-private bytes);
  `copying` is 1 when the worker was still copying fast as the scan started;
- cow_estimates: the per-tick estimate of a worker's copied bytes between scans (its
  Private_Dirty growth since its first sample), one row whenever it moves;
- cow_details: a scan's detail in one compact row (schema 3): bytes per mapping kind and page
  class, copied bytes and objects per Python type, per cause, and per type and cause, as
  zlib-compressed JSON (`DETAIL_KEYS`). A full scan's detail is ~1.4 KB instead of ~5.3 KB of
  rows, a quarter of a steady 64-worker recording before (bench/bench_storage.py).

Recordings of schema 1 and 2 hold the detail as rows of cow_by_kind, cow_by_type, cow_by_cause
and cow_by_type_cause instead; `read_scans` reads both forms.

`process_id` refers to processes.id of the recording (the lead's schema); the scan keeps the
pid as well so a recording stays readable without the processes table.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from memscope.errors import RecordingError

if TYPE_CHECKING:
    from memscope.cow._model import CowScan, TypeBytes

__all__ = [
    "COW_DDL",
    "DETAIL_KEYS",
    "ScanPoint",
    "create_tables",
    "decode_detail",
    "encode_detail",
    "latest_and_peak",
    "read_estimates",
    "read_scan_points",
    "read_scans",
    "scans_of",
    "write_estimates",
    "write_scan",
]

COW_DDL = (
    """CREATE TABLE IF NOT EXISTS cow_scans (
        id INTEGER PRIMARY KEY,
        process_id INTEGER NOT NULL,
        pid INTEGER NOT NULL,
        parent_pid INTEGER NOT NULL,
        t REAL NOT NULL,
        mode TEXT NOT NULL,
        inherited_bytes INTEGER NOT NULL,
        copied_bytes INTEGER NOT NULL,
        shared_bytes INTEGER NOT NULL,
        new_private_bytes INTEGER NOT NULL,
        swapped_bytes INTEGER NOT NULL,
        target TEXT NOT NULL,
        duration_s REAL NOT NULL,
        copying INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX IF NOT EXISTS cow_scans_process ON cow_scans(process_id, t)",
    """CREATE TABLE IF NOT EXISTS cow_details (
        scan_id INTEGER PRIMARY KEY REFERENCES cow_scans(id),
        data BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cow_estimates (
        process_id INTEGER NOT NULL, t REAL NOT NULL, copied_bytes INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cow_estimates_process ON cow_estimates(process_id, t)",
)

# Keep recordings bounded: per scan, the largest types only (the rest summed as "(other)").
MAX_TYPES = 50
#: The keys of a cow_details row's JSON object (docs/recording.md):
#: kind: {kind: {class: bytes}} (non-zero cells); type: [[type, bytes, objects], ...];
#: cause: {cause: bytes}; type_cause: {type: {cause: bytes}} (same types as "type").
DETAIL_KEYS = ("kind", "type", "cause", "type_cause")
#: A detail decompresses to far less (50 types); more is a damaged row, not a scan.
_MAX_DETAIL = 1 << 24


def create_tables(conn: sqlite3.Connection) -> None:
    for ddl in COW_DDL:
        conn.execute(ddl)


def write_scan(
    conn: sqlite3.Connection, process_id: int, scan: CowScan, copying: bool = False
) -> int:
    """Insert one scan (not committed: the recording writer commits per tick). Returns its id.

    `copying`: the worker was still copying fast when the scan started (its figure may be
    overtaken; the report marks it)."""
    cur = conn.execute(
        "INSERT INTO cow_scans (process_id, pid, parent_pid, t, mode, inherited_bytes,"
        " copied_bytes, shared_bytes, new_private_bytes, swapped_bytes, target, duration_s,"
        " copying) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            process_id, scan.pid, scan.parent_pid, scan.scanned_at, scan.mode,
            scan.inherited_bytes, scan.copied_bytes, scan.shared_bytes,
            scan.new_private_bytes, scan.swapped_bytes, scan.target, scan.duration_s,
            int(copying),
        ),
    )
    scan_id = int(cur.lastrowid or 0)
    conn.execute("INSERT INTO cow_details (scan_id, data) VALUES (?, ?)",
                 (scan_id, encode_detail(scan)))
    return scan_id


def encode_detail(scan: CowScan) -> bytes:
    """A scan's detail as one cow_details BLOB: the largest MAX_TYPES types (the rest as
    "(other)"), non-zero kind cells, zlib-compressed compact JSON."""
    types = _bounded(scan.by_type)
    kept = {t.type for t in types}
    detail = {
        "kind": {k: {c: b for c, b in row.items() if b} for k, row in scan.by_kind.items()
                 if any(row.values())},
        "type": [[t.type, t.bytes, t.objects] for t in types],
        "cause": dict(scan.by_cause),
        "type_cause": _fold_type_cause(scan.by_type_cause, kept),
    }
    return zlib.compress(json.dumps(detail, separators=(",", ":")).encode(), 9)


def decode_detail(data: object, into: CowScan) -> None:
    """Fill `into`'s by_kind, by_type, by_cause and by_type_cause from a cow_details BLOB,
    or raise RecordingError (one line) if the row is damaged."""
    from memscope.cow._model import TypeBytes

    try:
        if not isinstance(data, bytes):
            raise TypeError(f"a {type(data).__name__}, not a BLOB")
        inflate = zlib.decompressobj()
        raw = inflate.decompress(data, _MAX_DETAIL)
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError("truncated or too large")
        detail = json.loads(raw)
        if not isinstance(detail, dict) or set(detail) != set(DETAIL_KEYS):
            raise ValueError("not an object of the detail keys")
        kind = {k: _int_map(row) for k, row in _str_map(detail["kind"]).items()}
        types = [TypeBytes(_str(t), _int(b), _int(n)) for t, b, n in _list(detail["type"])]
        cause = _int_map(detail["cause"])
        type_cause = {t: _int_map(row) for t, row in _str_map(detail["type_cause"]).items()}
    except (zlib.error, ValueError, TypeError, RecursionError) as exc:
        raise RecordingError(f"the COW scan of PID {into.pid} at t={into.scanned_at:.3f}:"
                             f" its detail (cow_details) is damaged ({exc})") from None
    into.by_kind.update(kind)
    into.by_type.extend(sorted(types, key=lambda t: -t.bytes))
    into.by_cause.update(cause)
    into.by_type_cause.update(type_cause)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a name")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not a byte count")
    return value


def _list(value: object) -> list[list[object]]:
    if not isinstance(value, list) or not all(isinstance(v, list) and len(v) == 3
                                              for v in value):
        raise TypeError("type rows are not [type, bytes, objects] lists")
    return value


def _str_map(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TypeError(f"{type(value).__name__} is not an object")
    return {_str(k): v for k, v in value.items()}


def _int_map(value: object) -> dict[str, int]:
    return {k: _int(v) for k, v in _str_map(value).items()}


def _bounded(types: list[TypeBytes]) -> list[TypeBytes]:
    from memscope.cow._model import TypeBytes

    if len(types) <= MAX_TYPES:
        return list(types)
    rest = types[MAX_TYPES - 1 :]
    other = TypeBytes("(other)", sum(t.bytes for t in rest), sum(t.objects for t in rest))
    return [*types[: MAX_TYPES - 1], other]


def _fold_type_cause(
    table: dict[str, dict[str, int]], kept: set[str]
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for t, row in table.items():
        key = t if t in kept else "(other)"
        dest = out.setdefault(key, {})
        for c, b in row.items():
            dest[c] = dest.get(c, 0) + b
    return out


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return any(r[1] == column for r in conn.execute(f"PRAGMA table_info({table})"))


def read_scans(conn: sqlite3.Connection) -> dict[int, list[CowScan]]:
    """Every scan of the recording, per process_id, oldest first (with `CowScan.copying`),
    its detail from cow_details (schema 3) or the cow_by_* rows (schema 1 and 2)."""
    from memscope.cow._model import CowScan

    try:
        rows = conn.execute(
            "SELECT id, process_id, pid, parent_pid, t, mode, inherited_bytes, copied_bytes,"
            " shared_bytes, new_private_bytes, swapped_bytes, target, duration_s"
            " FROM cow_scans ORDER BY process_id, t, id"
        ).fetchall()
    except sqlite3.OperationalError:  # a recording made without COW scans
        return {}
    copying = set()
    if _has_column(conn, "cow_scans", "copying"):
        copying = {r[0] for r in conn.execute("SELECT id FROM cow_scans WHERE copying")}
    scans: dict[int, CowScan] = {}
    out: dict[int, list[CowScan]] = {}
    for r in rows:
        scan = CowScan(
            pid=r[2], parent_pid=r[3], scanned_at=r[4], mode=r[5], inherited_bytes=r[6],
            copied_bytes=r[7], shared_bytes=r[8], new_private_bytes=r[9], swapped_bytes=r[10],
            target=r[11], duration_s=r[12], copying=r[0] in copying,
        )
        scans[r[0]] = scan
        out.setdefault(r[1], []).append(scan)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "cow_details" in tables:  # schema 3
        for sid, data in conn.execute("SELECT scan_id, data FROM cow_details"):
            if sid in scans:
                decode_detail(data, scans[sid])
    if "cow_by_kind" in tables:  # schema 1 and 2: one row per cell
        _read_detail_rows(conn, scans)
    return out


def _read_detail_rows(conn: sqlite3.Connection, scans: dict[int, CowScan]) -> None:
    from memscope.cow._model import TypeBytes

    for sid, kind, cls, b in conn.execute("SELECT scan_id, kind, class, bytes FROM cow_by_kind"):
        scans[sid].by_kind.setdefault(kind, {})[cls] = b
    for sid, t, b, n in conn.execute(
        "SELECT scan_id, type, bytes, objects FROM cow_by_type ORDER BY scan_id, bytes DESC"
    ):
        scans[sid].by_type.append(TypeBytes(t, b, n))
    for sid, c, b in conn.execute("SELECT scan_id, cause, bytes FROM cow_by_cause"):
        scans[sid].by_cause[c] = b
    for sid, t, c, b in conn.execute("SELECT scan_id, type, cause, bytes FROM cow_by_type_cause"):
        scans[sid].by_type_cause.setdefault(t, {})[c] = b


def scans_of(conn: sqlite3.Connection, process_ids: Iterable[int]) -> dict[int, list[CowScan]]:
    wanted = set(process_ids)
    return {k: v for k, v in read_scans(conn).items() if k in wanted}


@dataclass(frozen=True, slots=True)
class ScanPoint:
    """The headline numbers of one scan (no per-type detail)."""

    scan_id: int
    process_id: int
    pid: int
    t: float
    copied_bytes: int
    inherited_bytes: int
    shared_bytes: int
    copying: bool


def read_scan_points(conn: sqlite3.Connection, since_id: int = 0) -> list[ScanPoint]:
    """Scans with id > since_id, in id order (incremental readers pass the last id seen)."""
    try:
        cols = "copying" if _has_column(conn, "cow_scans", "copying") else "0"
        rows = conn.execute(
            "SELECT id, process_id, pid, t, copied_bytes, inherited_bytes, shared_bytes,"
            f" {cols} FROM cow_scans WHERE id > ? ORDER BY id",
            (since_id,),
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    return [ScanPoint(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7])) for r in rows]


def latest_and_peak(
    points: Iterable[ScanPoint], into: dict[int, tuple[ScanPoint, ScanPoint]] | None = None
) -> dict[int, tuple[ScanPoint, ScanPoint]]:
    """THE answer to "latest and peak scan of each process": process_id -> (latest, peak).

    Latest is the last taken (time, then id); peak the one with the most copied bytes (the
    earliest of equals). `into` updates an earlier answer with newer points (incremental)."""
    out = {} if into is None else into
    for p in points:
        old = out.get(p.process_id)
        if old is None:
            out[p.process_id] = (p, p)
            continue
        latest, peak = old
        if (p.t, p.scan_id) >= (latest.t, latest.scan_id):
            latest = p
        if p.copied_bytes > peak.copied_bytes:
            peak = p
        out[p.process_id] = (latest, peak)
    return out


def write_estimates(
    conn: sqlite3.Connection, rows: Sequence[tuple[int, float, int]]
) -> None:
    """(process_id, t, estimated copied bytes) rows."""
    conn.executemany("INSERT INTO cow_estimates VALUES (?, ?, ?)", rows)


def read_estimates(conn: sqlite3.Connection) -> dict[int, list[tuple[float, int]]]:
    """process_id -> [(t, estimated copied bytes)] in time order ({} without the table)."""
    out: dict[int, list[tuple[float, int]]] = {}
    try:
        rows = conn.execute(
            "SELECT process_id, t, copied_bytes FROM cow_estimates ORDER BY process_id, t"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    for pid, t, b in rows:
        out.setdefault(pid, []).append((t, b))
    return out
