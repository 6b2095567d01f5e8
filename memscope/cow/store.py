"""COW scans in a recording: extension tables, writer and reader (SQLite).

Tables (documented in docs/cow.md; appended to recording.EXTENSION_DDL):

- cow_scans: one row per scan of one process (timeline of copied/shared/new-private bytes);
- cow_by_kind: bytes per mapping kind and page class of a scan;
- cow_by_type: copied bytes and object count per Python type of a scan;
- cow_by_cause: copied bytes per cause of a scan;
- cow_by_type_cause: copied bytes per type and cause of a scan.

`process_id` refers to processes.id of the recording (the lead's schema); the scan keeps the
pid as well so a recording stays readable without the processes table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from memscope.cow._model import CowScan, TypeBytes
from memscope.recording import EXTENSION_DDL

__all__ = ["COW_DDL", "create_tables", "read_scans", "scans_of", "write_scan"]

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
        duration_s REAL NOT NULL)""",
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
)

EXTENSION_DDL.extend(ddl for ddl in COW_DDL if ddl not in EXTENSION_DDL)

# Keep recordings bounded: per scan, the largest types only (the rest summed as "(other)").
MAX_TYPES = 50


def create_tables(conn: sqlite3.Connection) -> None:
    for ddl in COW_DDL:
        conn.execute(ddl)


def write_scan(conn: sqlite3.Connection, process_id: int, scan: CowScan) -> int:
    """Insert one scan (not committed: the recording writer commits per tick). Returns its id."""
    cur = conn.execute(
        "INSERT INTO cow_scans (process_id, pid, parent_pid, t, mode, inherited_bytes,"
        " copied_bytes, shared_bytes, new_private_bytes, swapped_bytes, target, duration_s)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            process_id, scan.pid, scan.parent_pid, scan.scanned_at, scan.mode,
            scan.inherited_bytes, scan.copied_bytes, scan.shared_bytes,
            scan.new_private_bytes, scan.swapped_bytes, scan.target, scan.duration_s,
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


def read_scans(conn: sqlite3.Connection) -> dict[int, list[CowScan]]:
    """Every scan of the recording, per process_id, oldest first."""
    try:
        rows = conn.execute(
            "SELECT id, process_id, pid, parent_pid, t, mode, inherited_bytes, copied_bytes,"
            " shared_bytes, new_private_bytes, swapped_bytes, target, duration_s"
            " FROM cow_scans ORDER BY process_id, t, id"
        ).fetchall()
    except sqlite3.OperationalError:  # a recording made without COW scans
        return {}
    scans: dict[int, CowScan] = {}
    out: dict[int, list[CowScan]] = {}
    for r in rows:
        scan = CowScan(
            pid=r[2], parent_pid=r[3], scanned_at=r[4], mode=r[5], inherited_bytes=r[6],
            copied_bytes=r[7], shared_bytes=r[8], new_private_bytes=r[9], swapped_bytes=r[10],
            target=r[11], duration_s=r[12],
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
