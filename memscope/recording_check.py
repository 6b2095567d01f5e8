"""Typed decoding of a recording's meta and processes rows: damage becomes RecordingError.

A recording is input like any other: a damaged or hand-edited file must give a one-line
error (exit 2), never a TypeError three modules later. Values are checked once, here, against
the types the writer stores (docs/recording.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from memscope.errors import RecordingError
from memscope.roles import ROLES

if TYPE_CHECKING:
    from memscope.recording import ProcessRow

__all__ = ["check_tables", "damaged_recording", "process_row", "read_meta"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


#: Timestamps must fall in years 1970-9999 (datetime's range; report headers format them).
MAX_TIME = 253402300799.0


def _is_time(v: Any) -> bool:
    return _is_number(v) and 0 <= v <= MAX_TIME


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


_TEXT = "text"
_NUMBER = "a finite number"
_INT = "an integer"
_TIME = "a time in years 1970-9999"

#: Meta keys memscope reads, and what each must hold. Other keys are kept as they are.
_META: dict[str, tuple[Callable[[Any], bool], str]] = {
    "schema_version": (_is_int, _INT),
    "memscope_version": (lambda v: isinstance(v, str), _TEXT),
    "mode": (lambda v: isinstance(v, str), _TEXT),
    "command": (_is_str_list, "a list of strings"),
    "started_at": (_is_time, _TIME),
    "ended_at": (_optional(_is_time), _TIME),
    "interval_s": (_is_number, _NUMBER),
    "budget": (_is_number, _NUMBER),
    "root_pid": (_is_int, _INT),
    "exit_code": (_optional(_is_int), _INT),
    "sampler_ticks": (_is_int, _INT),
    "sampler_cpu_s": (_is_number, _NUMBER),
    "sampler_stretched_to_s": (_is_number, _NUMBER),
    "process_cpu_s": (_is_number, _NUMBER),
    "cow_scan_cpu_s": (_is_number, _NUMBER),
    "cow_errors": (lambda v: isinstance(v, dict), "an object"),
    "leak_hook_errors": (lambda v: isinstance(v, list), "a list"),
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_meta(path: str, rows: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, raw in rows:
        if not isinstance(key, str) or not isinstance(raw, str):
            raise RecordingError(f"{path}: damaged meta table (key {key!r} is not text)")
        try:
            value = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise RecordingError(f"{path}: meta value {key!r} is not valid JSON") from None
        check = _META.get(key)
        if check is not None and not check[0](value):
            raise RecordingError(f"{path}: meta value {key!r} is not {check[1]}")
        meta[key] = value
    return meta


_PROCESS_COLUMNS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("id", _is_int, _INT),
    ("pid", _is_int, _INT),
    ("start_ticks", _is_int, _INT),
    ("ppid", _is_int, _INT),
    ("parent_id", _optional(_is_int), _INT),
    ("role", lambda v: v in ROLES, ", ".join(ROLES)),
    ("cmdline", lambda v: isinstance(v, str), "JSON text"),
    ("exe", _optional(lambda v: isinstance(v, str)), _TEXT),
    ("python_version", _optional(lambda v: isinstance(v, str)), _TEXT),
    ("started_at", _is_time, _TIME),
    ("exited_at", _optional(_is_time), _TIME),
    ("exit_code", _optional(_is_int), _INT),
)


def process_row(path: str, r: tuple[Any, ...]) -> ProcessRow:
    from memscope.recording import ProcessRow

    for (name, check, what), value in zip(_PROCESS_COLUMNS, r, strict=True):
        if not check(value):
            raise RecordingError(f"{path}: processes row {r[0]!r}: {name} is not {what}")
    try:
        cmdline = json.loads(r[6], parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        cmdline = None
    if not _is_str_list(cmdline):
        raise RecordingError(f"{path}: processes row {r[0]}: cmdline is not a JSON list of text")
    return ProcessRow(
        id=r[0],
        pid=r[1],
        start_ticks=r[2],
        ppid=r[3],
        parent_id=r[4],
        role=r[5],
        cmdline=cmdline,
        exe=r[7],
        python_version=r[8],
        started_at=float(r[9]),
        exited_at=None if r[10] is None else float(r[10]),
        exit_code=r[11],
    )


#: What damaged values raise deep in analysis code (a text where a number belongs, a missing
#: row an extension expects, an overflow, ...).
_DAMAGE = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
           UnicodeError, RecursionError)


@contextlib.contextmanager
def damaged_recording(what: str = "a recording") -> Iterator[None]:
    """The last line of defence of `report`, `check` and `baseline`: a value that the typed
    decoding above cannot see (samples, extension tables) and that breaks the analysis becomes
    a one-line RecordingError (exit 2) instead of a traceback. `make fuzz` counts how often
    this is reached (docs/errors.md)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise RecordingError(f"{what} is corrupt or truncated ({exc})") from None
    except _DAMAGE as exc:
        detail = " ".join(str(exc).split())[:200]
        raise RecordingError(
            f"{what} holds damaged values ({type(exc).__name__}: {detail})"
        ) from None


#: Tables checked column by column at open (their rows are few: ticks, COW scans, leak and
#: site snapshots). `samples` is left to the analysis and its guard: checking it would read
#: every sample of a long recording once more.
_UNCHECKED = frozenset({"meta", "processes", "samples"})
_ALLOWED = {"INTEGER": "'integer'", "REAL": "'real', 'integer'", "TEXT": "'text'"}
#: Implicit references: a row must point at an existing scan or process.
_REFERENCES = {"scan_id": ("cow_scans", "id"), "process_id": ("processes", "id")}


def check_tables(path: str, conn: sqlite3.Connection) -> None:
    """Raise RecordingError for a value whose type contradicts its column's declared type,
    a non-finite REAL, or a row that points at a scan or process that does not exist."""
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    for table in tables:
        if table in _UNCHECKED or not table.isidentifier():
            continue
        conditions = []
        for _cid, col, decl, notnull, _default, _pk in conn.execute(
                f'PRAGMA table_info("{table}")'):
            allowed = _ALLOWED.get(str(decl).upper())
            if allowed is None or not str(col).isidentifier():
                continue
            allowed += "" if notnull else ", 'null'"
            conditions.append(f'typeof("{col}") NOT IN ({allowed})')
            if str(decl).upper() == "REAL":
                conditions.append(f'abs("{col}") > 1.7976931348623157e308')
                if col == "t":  # a timestamp: reports format it as a date
                    conditions.append(f'("{col}" < 0 OR "{col}" > {MAX_TIME})')
            target = _REFERENCES.get(col)
            if target is not None and target[0] in tables and target[0] != table:
                conditions.append(f'"{col}" NOT IN (SELECT "{target[1]}" FROM "{target[0]}")')
        if not conditions:
            continue
        row = conn.execute(
            f'SELECT rowid FROM "{table}" WHERE {" OR ".join(conditions)} LIMIT 1').fetchone()
        if row is not None:
            raise RecordingError(f"{path}: table {table}, row {row[0]}: a value of the wrong"
                                 " type, out of range, or pointing at nothing")
