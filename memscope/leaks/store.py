"""Leak snapshots and COW sites in a recording: the leaks and sites features' tables, writers
and readers (their only SQL).

Tables (declared by memscope.features; documented in docs/leaks.md):

- leak_snapshots(process_id, t, kind, name, bytes): one row per name per snapshot. kind "type"
  (out-of-process type census: total bytes of the type) or "site" (agent: traced bytes grown
  at that allocating line since the agent's first snapshot).
- cow_sites(process_id, t, site, bytes, objects, traceback): copied bytes of a worker by the
  allocation site of the blocks in its copied pages, per sites scan; traceback is a JSON list
  of [file, line], most recent first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from memscope.cow._model import SiteBytes
from memscope.recording import Recording, RecordingWriter

__all__ = [
    "LEAK_DDL",
    "SITES_DDL",
    "latest_cow_sites",
    "read_leak_snapshots",
    "write_cow_sites",
    "write_leak_snapshot",
]

LEAK_DDL = (
    """CREATE TABLE IF NOT EXISTS leak_snapshots (
        process_id INTEGER NOT NULL, t REAL NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        bytes INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS leak_snapshots_process ON leak_snapshots(process_id, t)",
)
SITES_DDL = (
    """CREATE TABLE IF NOT EXISTS cow_sites (
        process_id INTEGER NOT NULL, t REAL NOT NULL, site TEXT NOT NULL,
        bytes INTEGER NOT NULL, objects INTEGER NOT NULL, traceback TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS cow_sites_process ON cow_sites(process_id, t)",
)

MAX_NAMES = 200  # per snapshot: the largest names only, to keep recordings bounded


def write_leak_snapshot(
    writer: RecordingWriter, process_id: int, t: float, kind: str, sizes: Mapping[str, int]
) -> None:
    top = sorted(sizes.items(), key=lambda kv: -abs(kv[1]))[:MAX_NAMES]
    writer.executemany(
        "INSERT INTO leak_snapshots VALUES (?, ?, ?, ?, ?)",
        [(process_id, t, kind, name, int(b)) for name, b in top],
    )


def write_cow_sites(
    writer: RecordingWriter, process_id: int, t: float, sites: Iterable[SiteBytes]
) -> None:
    writer.executemany(
        "INSERT INTO cow_sites VALUES (?, ?, ?, ?, ?, ?)",
        [
            (process_id, t, s.site, s.bytes, s.objects, json.dumps([list(f) for f in s.traceback]))
            for s in sites
        ],
    )


def read_leak_snapshots(
    rec: Recording, process_id: int
) -> dict[str, list[tuple[float, dict[str, int]]]]:
    """kind -> [(t, {name: bytes})] in time order."""
    out: dict[str, dict[float, dict[str, int]]] = {}
    if not rec.has_table("leak_snapshots"):
        return {}
    for t, kind, name, nbytes in rec.conn.execute(
        "SELECT t, kind, name, bytes FROM leak_snapshots WHERE process_id = ? ORDER BY t",
        (process_id,),
    ):
        out.setdefault(kind, {}).setdefault(t, {})[name] = nbytes
    return {k: sorted(v.items()) for k, v in out.items()}


def latest_cow_sites(rec: Recording, process_id: int) -> tuple[float, list[dict[str, Any]]]:
    """(t, rows) of the latest sites scan of a process; rows are JSON-ready."""
    if not rec.has_table("cow_sites"):
        return 0.0, []
    row = rec.conn.execute(
        "SELECT MAX(t) FROM cow_sites WHERE process_id = ?", (process_id,)
    ).fetchone()
    if row is None or row[0] is None:
        return 0.0, []
    t = float(row[0])
    rows = [
        {"site": site, "bytes": b, "objects": n, "traceback": json.loads(tb)}
        for site, b, n, tb in rec.conn.execute(
            "SELECT site, bytes, objects, traceback FROM cow_sites"
            " WHERE process_id = ? AND t = ? ORDER BY bytes DESC",
            (process_id, t),
        )
    ]
    return t, rows
