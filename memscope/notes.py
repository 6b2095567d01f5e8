"""Notes: what a feature could not do during a recording, and for which processes.

A scan that failed because its worker was gone, an agent that could not be reached, a leak
snapshot that did not work: each is written to the `notes` table as it happens, with the PID
it concerns, and every report shows them grouped ("COW sites not resolved: cannot reach agent
(workers 41, 42)") instead of leaving them in a meta key nobody reads.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["NOTES_DDL", "Note", "NoteLog", "group_notes", "read_notes", "write_notes"]

NOTES_DDL = (
    """CREATE TABLE IF NOT EXISTS notes (
        feature TEXT NOT NULL, pid INTEGER, t REAL NOT NULL, message TEXT NOT NULL)""",
)

#: Per feature and message, keep the first few occurrences (a broken agent fails every tick).
MAX_PER_MESSAGE = 64


@dataclass(frozen=True, slots=True)
class Note:
    """One problem, with every process it affected (PIDs sorted)."""

    feature: str
    message: str
    pids: tuple[int, ...]
    first_t: float

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "message": self.message, "pids": list(self.pids)}

    def describe(self) -> str:
        if not self.pids:
            return f"{self.feature}: {self.message}"
        who = "worker" if len(self.pids) == 1 else "workers"
        shown = ", ".join(str(p) for p in self.pids[:12])
        more = f" and {len(self.pids) - 12} more" if len(self.pids) > 12 else ""
        return f"{self.feature}: {self.message} ({who} {shown}{more})"


_NUMBER = re.compile(r"\b\d{2,}\b")


def _generic(message: str) -> str:
    """The message with PIDs (numbers) blanked, so notes about different workers group."""
    return _NUMBER.sub("N", message)


class NoteLog:
    """Collects notes on a feature's thread; `drain()` hands them to the writer's thread."""

    def __init__(self, feature: str) -> None:
        self.feature = feature
        self._pending: list[tuple[int | None, float, str]] = []
        self._counts: dict[str, int] = {}

    def add(self, pid: int | None, t: float, message: str) -> None:
        key = _generic(message)
        n = self._counts.get(key, 0)
        if n < MAX_PER_MESSAGE:
            self._counts[key] = n + 1
            self._pending.append((pid, t, message))  # list.append is atomic under the GIL

    def drain(self, conn: sqlite3.Connection) -> None:
        pending, self._pending = self._pending, []
        write_notes(conn, self.feature, pending)


def write_notes(
    conn: sqlite3.Connection, feature: str, rows: Iterable[tuple[int | None, float, str]]
) -> None:
    conn.executemany(
        "INSERT INTO notes (feature, pid, t, message) VALUES (?, ?, ?, ?)",
        [(feature, pid, t, msg) for pid, t, msg in rows],
    )


def read_notes(conn: sqlite3.Connection) -> list[tuple[str, int | None, float, str]]:
    try:
        return list(conn.execute("SELECT feature, pid, t, message FROM notes ORDER BY t, rowid"))
    except sqlite3.OperationalError:  # a recording from before notes existed
        return []


def group_notes(rows: Iterable[tuple[str, int | None, float, str]]) -> list[Note]:
    """One Note per feature and message (PIDs blanked), in order of first occurrence."""
    groups: dict[tuple[str, str], tuple[set[int], float, str]] = {}
    for feature, pid, t, message in rows:
        key = (feature, _generic(message))
        pids, _, _ = groups.setdefault(key, (set(), t, message))
        if pid is not None:
            pids.add(pid)
    return [
        Note(feature, message, tuple(sorted(pids)), first)
        for (feature, _), (pids, first, message) in groups.items()
    ]
