"""COW scans in a recording: the COW feature's tables, writer and readers (its only SQL).

Tables (documented in docs/cow.md and docs/recording.md; declared by memscope.features):

- cow_scans: one row per scan of one process (timeline of copied/shared/new-private bytes);
  `copying` is 1 when the worker was still copying fast as the scan started;
- cow_estimates: the per-tick estimate of a worker's copied bytes between scans (its
  Private_Dirty growth since its first sample), one row whenever it moves;
- cow_by_kind: bytes per mapping kind and page class of a scan;
- cow_by_type: copied bytes and object count per Python type of a scan;
- cow_by_cause: copied bytes per cause of a scan;
- cow_by_type_cause: copied bytes per type and cause of a scan.

`process_id` refers to processes.id of the recording (the lead's schema); the scan keeps the
pid as well so a recording stays readable without the processes table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memscope.cow._model import CowScan, TypeBytes

__all__ = [
    "COW_DDL",
    "ScanPoint",
    "create_tables",
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
    """CREATE TABLE IF NOT EXISTS cow_by_kind (
        scan_id INTEGER NOT NULL, kind TEXT NOT NULL, class TEXT NOT NULL,
        bytes INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cow_by_type (
        scan_id INTEGER NOT NULL, type TEXT NOT NULL, bytes INTEGER NOT NULL,
        objects INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cow_by_cause (
        scan_id INTEGER NOT NULL, cause TEXT NOT NULL, bytes INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cow_by_type_cause (
        scan_id INTEGER NOT NULL, type TEXT NOT NULL, cause TEXT NOT NULL,
        bytes INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cow_estimates (
        process_id INTEGER NOT NULL, t REAL NOT NULL, copied_bytes INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cow_estimates_process ON cow_estimates(process_id, t)",
)

# Keep recordings bounded: per scan, the largest types only (the rest summed as "(other)").
MAX_TYPES = 50


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
    conn.executemany(
        "INSERT INTO cow_by_kind VALUES (?, ?, ?, ?)",
        [(scan_id, k, c, b) for k, row in scan.by_kind.items() for c, b in row.items() if b],
    )
    types = _bounded(scan.by_type)
    kept = {t.type for t in types}
    conn.executemany(
        "INSERT INTO cow_by_type VALUES (?, ?, ?, ?)",
        [(scan_id, t.type, t.bytes, t.objects) for t in types],
    )
    conn.executemany(
        "INSERT INTO cow_by_cause VALUES (?, ?, ?)",
        [(scan_id, c, b) for c, b in scan.by_cause.items()],
    )
    conn.executemany(
        "INSERT INTO cow_by_type_cause VALUES (?, ?, ?, ?)",
        [
            (scan_id, t, c, b)
            for t, row in _fold_type_cause(scan.by_type_cause, kept).items()
            for c, b in row.items()
        ],
    )
    return scan_id


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
    """Every scan of the recording, per process_id, oldest first (with `CowScan.copying`)."""
    from memscope.cow._model import CowScan, TypeBytes

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
    return out


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
