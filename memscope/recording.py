"""The recording: one SQLite file (WAL), written as the run goes, read by every report.

The schema is documented in docs/recording.md. `SCHEMA_VERSION` is bumped whenever a table or
column changes meaning; a reader refuses files with a newer version instead of misreading them.
Feature tables (COW scans, leaks, ...) are listed by `memscope.features.recording_tables()`;
every recording has all of them, whatever was imported before.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memscope.errors import RecordingError
from memscope.outputs import create_recording_file
from memscope.recording_check import check_tables, process_row, read_meta
from memscope.sample_store import CHUNK_DDL, CHUNK_ROWS, Chunker, SampleColumns, read_columns

__all__ = [
    "APPLICATION_ID",
    "REPORT_COLUMNS",
    "SAMPLE_COLUMNS",
    "SCHEMA_VERSION",
    "ProcessRow",
    "Recording",
    "RecordingWriter",
    "SampleColumns",
    "SampleRow",
    "open_recording",
]

SCHEMA_VERSION = 3  # 3: COW scan detail in compact cow_details; 2: samples in compact
# sample_chunks; 1: plain rows only (all still read)
#: Seconds between WAL checkpoints while recording (RecordingWriter.flush).
CHECKPOINT_S = 2.0
WRITER_CACHE_KIB = 512  # SQLite page cache of the recording being written
APPLICATION_ID = 0x4D534350  # "MSCP", so `file`-like checks can tell a recording apart

SAMPLE_COLUMNS = (
    "rss",
    "pss",
    "uss",
    "shared_clean",
    "shared_dirty",
    "private_clean",
    "private_dirty",
    "swap",
    "swap_pss",
    "pss_anon",
    "pss_file",
    "pss_shmem",
    "anonymous",
    "rss_shared",
)

_CORE_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS processes (
        id INTEGER PRIMARY KEY,
        pid INTEGER NOT NULL,
        start_ticks INTEGER NOT NULL,
        ppid INTEGER NOT NULL,
        parent_id INTEGER REFERENCES processes(id),
        role TEXT NOT NULL CHECK (role IN ('root', 'worker', 'descendant', 'master', 'wrapper')),
        cmdline TEXT NOT NULL,
        exe TEXT,
        python_version TEXT,
        started_at REAL NOT NULL,
        exited_at REAL,
        exit_code INTEGER,
        reuse INTEGER NOT NULL DEFAULT 0,
        UNIQUE (pid, start_ticks, reuse)
    )""",
    f"""CREATE TABLE IF NOT EXISTS samples (
        process_id INTEGER NOT NULL REFERENCES processes(id),
        t REAL NOT NULL,
        {", ".join(f"{c} INTEGER" for c in SAMPLE_COLUMNS)}
    )""",
    "CREATE INDEX IF NOT EXISTS samples_by_process ON samples (process_id, t)",
    """CREATE TABLE IF NOT EXISTS ticks (
        t REAL NOT NULL,
        wall_s REAL NOT NULL,
        cpu_s REAL NOT NULL,
        processes INTEGER NOT NULL,
        rollups INTEGER NOT NULL
    )""",
    # processes the kernel's events (or a changed command line) showed to exec after their
    # fork (memscope.roles); absent in files written before it: readers check has_table
    """CREATE TABLE IF NOT EXISTS process_exec (
        process_id INTEGER PRIMARY KEY REFERENCES processes(id)
    )""",
    *CHUNK_DDL,
]

#: The sample columns reports read (summary, leaks, HTML charts), decoded together once.
#: "shared" is shared_clean + shared_dirty (sample_store.DERIVED).
REPORT_COLUMNS = ("rss", "pss", "uss", "shared", "swap", "rss_shared")


@dataclass(frozen=True, slots=True)
class ProcessRow:
    id: int
    pid: int
    start_ticks: int
    ppid: int
    parent_id: int | None
    role: str
    cmdline: list[str]
    exe: str | None
    python_version: str | None
    started_at: float
    exited_at: float | None
    exit_code: int | None

    @property
    def command(self) -> str:
        return " ".join(self.cmdline)


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One sample. Values from smaps_rollup (pss, uss, ...) are None on counter-only ticks."""

    process_id: int
    t: float
    values: dict[str, int | None]

    def __getitem__(self, column: str) -> int | None:
        return self.values[column]


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class RecordingWriter:
    """Streams a run into the file. Commits every `flush()` so a SIGKILL loses at most one batch."""

    def __init__(
        self, path: str, meta: dict[str, Any], tables: Sequence[str] | None = None
    ) -> None:
        """`tables`: feature DDL (idempotent); default every feature's (memscope.features)."""
        if tables is None:
            from memscope.features import recording_tables

            tables = recording_tables()
        create_recording_file(path)  # never over anything: memscope.outputs
        self.path = path
        self.conn = _connect(path)
        self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # close() returns freed pages
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        # The writer appends: 512 KiB of page cache serve it as well as SQLite's default 2 MiB,
        # which filled up over a soak's first ~2 MiB of recording as memscope's RSS creeping
        # by 2 MiB (docs/performance.md, soak).
        self.conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.conn.execute("BEGIN")
        for ddl in [*_CORE_DDL, *tables]:
            self.conn.execute(ddl)
        self.set_meta(schema_version=SCHEMA_VERSION, **meta)
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")
        self._chunker = Chunker(self.conn, SAMPLE_COLUMNS, CHUNK_ROWS)
        self._checkpointed = time.monotonic()

    def set_meta(self, **values: Any) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    def add_process(
        self,
        *,
        pid: int,
        start_ticks: int,
        ppid: int,
        parent_id: int | None,
        role: str,
        cmdline: Sequence[str],
        exe: str | None,
        python_version: str | None,
        started_at: float,
    ) -> int:
        # A PID recycled within one clock tick repeats (pid, start_ticks): number the newcomer.
        reuse = self.conn.execute(
            "SELECT COALESCE(MAX(reuse) + 1, 0) FROM processes WHERE pid = ? AND start_ticks = ?",
            (pid, start_ticks),
        ).fetchone()[0]
        cur = self.conn.execute(
            "INSERT INTO processes (pid, start_ticks, ppid, parent_id, role, cmdline, exe,"
            " python_version, started_at, reuse) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                pid,
                start_ticks,
                ppid,
                parent_id,
                role,
                json.dumps(list(cmdline)),
                exe,
                python_version,
                started_at,
                reuse,
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def update_cmdline(self, process_id: int, cmdline: Sequence[str], exe: str | None) -> None:
        self.conn.execute(
            "UPDATE processes SET cmdline = ?, exe = ? WHERE id = ?",
            (json.dumps(list(cmdline)), exe, process_id),
        )

    def set_role(self, process_id: int, role: str) -> None:
        """Revise a process's role (memscope.roles): the recording keeps the last one."""
        self.conn.execute("UPDATE processes SET role = ? WHERE id = ?", (role, process_id))

    def mark_execd(self, process_id: int) -> None:
        """The process exec'd after its fork (table process_exec)."""
        self.conn.execute("INSERT OR IGNORE INTO process_exec (process_id) VALUES (?)",
                          (process_id,))

    def set_python_version(self, process_id: int, version: str | None) -> None:
        self.conn.execute(
            "UPDATE processes SET python_version = ? WHERE id = ?", (version, process_id)
        )

    def mark_exited(self, process_id: int, exited_at: float, exit_code: int | None) -> None:
        self.conn.execute(
            "UPDATE processes SET exited_at = COALESCE(exited_at, ?),"
            " exit_code = COALESCE(?, exit_code) WHERE id = ?",
            (exited_at, exit_code, process_id),
        )
        self._chunker.seal(process_id)

    def add_samples(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Rows are (process_id, t, *SAMPLE_COLUMNS), each process's in time order."""
        self._chunker.add(rows)

    def add_tick(self, t: float, wall_s: float, cpu_s: float, processes: int, rollups: int) -> None:
        self.conn.execute(
            "INSERT INTO ticks (t, wall_s, cpu_s, processes, rollups) VALUES (?, ?, ?, ?, ?)",
            (t, wall_s, cpu_s, processes, rollups),
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """For extension tables."""
        self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def flush(self) -> None:
        self.conn.execute("COMMIT")
        now = time.monotonic()
        if now - self._checkpointed >= CHECKPOINT_S:
            # Merge the WAL into the main file now and then, so that the file alone holds
            # the recording up to here (a SIGKILL leaves it complete but for the last seconds).
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._checkpointed = now
        self.conn.execute("BEGIN")

    def close(self) -> None:
        self._chunker.seal()
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.executescript("PRAGMA incremental_vacuum;")  # runs to completion, unlike execute
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


class Recording:
    """Read access to a recording. Samples are read as numpy columns (`columns`)."""

    def __init__(self, path: str, conn: sqlite3.Connection, meta: dict[str, Any]) -> None:
        self.path = path
        self.conn = conn
        self.meta = meta
        self._columns: SampleColumns | None = None
        self.snapshot_dir: str | None = None  # a private copy being read (see open_recording)
        self.processes = [
            process_row(path, r)
            for r in conn.execute(
                "SELECT id, pid, start_ticks, ppid, parent_id, role, cmdline, exe,"
                " python_version, started_at, exited_at, exit_code FROM processes ORDER BY id"
            )
        ]

    def has_table(self, name: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def columns(
        self, names: Sequence[str] = SAMPLE_COLUMNS, process_id: int | None = None
    ) -> SampleColumns:
        """Samples as numpy columns sorted by (process_id, t), NaN where not taken.

        The columns every report reads (REPORT_COLUMNS, all processes) are decoded once and
        kept, read-only, for the life of this object."""
        if process_id is not None or not set(names) <= set(REPORT_COLUMNS):
            return read_columns(self.conn, names, process_id)
        if self._columns is None:
            self._columns = read_columns(self.conn, REPORT_COLUMNS)
            for array in (self._columns.process_id, self._columns.t,
                          *self._columns.values.values()):
                array.flags.writeable = False
        cached = self._columns
        return SampleColumns(cached.process_id, cached.t, {n: cached.values[n] for n in names})

    def samples(self, process_id: int | None = None) -> Iterator[SampleRow]:
        """Samples in time order, for one process or for all: a Python object per row, so
        for small selections (tests, one process); reports use `columns`."""
        cols = self.columns(SAMPLE_COLUMNS, process_id)
        order = np.argsort(cols.t, kind="stable")
        values = [cols.values[c][order].tolist() for c in SAMPLE_COLUMNS]
        for i, (pid, t) in enumerate(zip(cols.process_id[order].tolist(), cols.t[order].tolist(),
                                         strict=True)):
            yield SampleRow(pid, t, {c: None if v[i] != v[i] else int(v[i])
                                     for c, v in zip(SAMPLE_COLUMNS, values, strict=True)})

    def ticks(self) -> list[tuple[float, float, float, int, int]]:
        return list(self.conn.execute("SELECT t, wall_s, cpu_s, processes, rollups FROM ticks"))

    def close(self) -> None:
        self.conn.close()
        if self.snapshot_dir is not None:
            shutil.rmtree(self.snapshot_dir, ignore_errors=True)
            self.snapshot_dir = None


def open_recording(path: str) -> Recording:
    """Open a recording for reading, or raise RecordingError with a one-line reason.

    Reading never writes: no -wal/-shm appear, and read-only directories and media work
    (docs/recording.md, "Reading"). A recording whose WAL was never merged (its writer was
    killed) is read from a private copy of the file and its WAL.
    """
    if not os.path.isfile(path):
        raise RecordingError(f"{path}: no such recording")
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None
    if not header.startswith(b"SQLite format 3\0"):
        raise RecordingError(f"{path}: not a memscope recording (not an SQLite file)")
    snapshot: str | None = None
    try:
        if _has_hot_wal(path):
            snapshot = _snapshot(path)
            conn = _reader_connection(os.path.join(snapshot, "r.memscope"), snapshot=True)
        else:
            conn = _reader_connection(path, snapshot=False)
        rec = _open(path, conn)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # damaged pages or schema text
        _remove_snapshot(snapshot)
        raise RecordingError(f"{path}: recording is corrupt or truncated ({exc})") from None
    except BaseException:
        _remove_snapshot(snapshot)
        raise
    rec.snapshot_dir = snapshot
    return rec


def _has_hot_wal(path: str) -> bool:
    try:
        return os.path.getsize(path + "-wal") > 0
    except OSError:
        return False


def _reader_connection(path: str, *, snapshot: bool) -> sqlite3.Connection:
    """Read-only and immutable (no locks, no -shm), by a URI-escaped path so that `?`, `#`
    and `%` in file names are file names. A snapshot is ours: opened normally to merge its WAL."""
    quoted = urllib.parse.quote(os.path.abspath(path))
    uri = f"file:{quoted}" if snapshot else f"file:{quoted}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    # Damaged text must not raise UnicodeDecodeError deep inside a report.
    conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
    return conn


def _snapshot(path: str) -> str:
    """Copy the file and its WAL into a private directory, retrying while a live writer
    checkpoints under us (the main file changes during the copy)."""
    directory = tempfile.mkdtemp(prefix="memscope-read-")
    target = os.path.join(directory, "r.memscope")
    try:
        for _ in range(5):
            before = os.stat(path)
            with contextlib.suppress(FileNotFoundError):  # merged and removed meanwhile
                shutil.copyfile(path + "-wal", target + "-wal")
            shutil.copyfile(path, target)
            after = os.stat(path)
            if (before.st_mtime_ns, before.st_size) == (after.st_mtime_ns, after.st_size):
                break
        return directory
    except OSError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise RecordingError(f"{path}: cannot read its WAL ({exc.strerror})") from None


def _remove_snapshot(directory: str | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def _open(path: str, conn: sqlite3.Connection) -> Recording:
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise RecordingError(f"{path}: not a memscope recording (foreign SQLite file)")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RecordingError(
                f"{path}: recording schema {version} is newer than this memscope supports"
                f" ({SCHEMA_VERSION}); upgrade memscope"
            )
        meta = read_meta(path, conn.execute("SELECT key, value FROM meta"))
        check_tables(path, conn)
        return Recording(path, conn, meta)
    except BaseException:
        conn.close()
        raise
