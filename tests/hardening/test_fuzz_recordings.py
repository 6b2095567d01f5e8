"""`report`, `check` and `baseline save` on mutated real recordings: exit 0/1, or exit 2 with
one error line; never a traceback, whatever the bytes or the values.

Byte mutations damage the file; value mutations keep it a valid SQLite database but put any
value (wrong types, huge numbers, infinities, bad JSON, control characters, markup) in any
column of any table. Outcomes are counted (MEMSCOPE_FUZZ_REPORT) for docs/errors.md.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from memscope.cli import cli
from tests.conftest import fixture
from tests.hardening._fuzz import FUZZ, save_counts

OUTCOMES: dict[str, Counter[str]] = {
    "bytes": Counter(), "values": Counter(), "bytes-guarded": Counter(),
    "values-guarded": Counter(),
}
_COUNTER = itertools.count()
_FORMATS = ["text", "json", "csv", "mprof", "prometheus", "html"]
_RULES = ["worker.uss.peak <= 1GiB", "tree.pss.peak <= 10GiB", "worker.cow.copied <= 1GiB",
          "process.uss.growth <= 1GiB", "tree.workers >= 1"]
_RULE_ARGS = [arg for rule in _RULES for arg in ("-r", rule)]


class Base:
    """The base recording's bytes (a class, so that hypothesis does not print them all)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"<base recording, {len(self.data)} bytes>"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    """A real recording: a preloading parent, two workers that copy pages, COW scans."""
    path = tmp_path_factory.mktemp("fuzz") / "base.memscope"
    done = subprocess.run(
        [sys.executable, "-m", "memscope", "run", "-q", "-i", "0.1", "--cow-interval", "0.2",
         "-o", str(path), "--", sys.executable, fixture("preload_list"), "--workers", "2",
         "--size", "200000", "--delay", "0.2", "--hold", "4.0"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    scans = conn.execute("SELECT COUNT(*) FROM cow_scans").fetchone()[0]
    conn.close()
    assert "cow_scans" in tables and scans > 0
    yield Base(path.read_bytes())
    _save()


def _save() -> None:
    for kind, counts in OUTCOMES.items():
        save_counts(f"recordings-{kind}", counts)


def _run(args: list[str]) -> tuple[str, str]:
    """(outcome, detail): ok / limit / error (one line) / crash."""
    result = CliRunner().invoke(cli, args)
    out = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return "crash", f"{type(result.exception).__name__}: {result.exception}"
    if "Traceback" in out:
        return "crash", out
    code = result.exit_code
    if code == 0:
        return "ok", ""
    if code == 1:
        return "limit", ""
    errors = [ln for ln in out.splitlines() if ln.startswith("memscope: error:")]
    if code == 2 and len(errors) == 1:
        kind = "guard" if "holds damaged values" in errors[0] else "error"
        return kind, errors[0]
    return "crash", f"exit {code}: {out[-500:]}"


def _exercise(path: str, fmt: str, kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for args in (["report", path, "-f", fmt],
                     ["check", path, "-f", "json", *_RULE_ARGS],
                     ["baseline", "save", path, "-o", os.path.join(tmp, "b.json")]):
            outcome, detail = _run(args)
            OUTCOMES[kind][f"{args[0]}:{outcome}"] += 1
            if args[0] == "baseline" and sum(OUTCOMES[kind].values()) % 600 == 0:
                _save()  # a long `make fuzz` keeps its counts even if it is stopped
            if outcome == "guard":  # which exception the last-resort guard turned into exit 2
                OUTCOMES[f"{kind}-guarded"][detail.split("(", 1)[1].split(":")[0]] += 1
            assert outcome != "crash", (args, detail)


@st.composite
def byte_mutations(draw: st.DrawFn, size: int) -> list[tuple[str, int, bytes]]:
    ops = []
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["set", "set", "set", "span", "truncate", "zero-page"]))
        at = draw(st.integers(0, size - 1))
        ops.append((op, at, draw(st.binary(min_size=1, max_size=32))))
    return ops


def _mutate_bytes(data: bytes, ops: list[tuple[str, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for op, at, payload in ops:
        if op == "set":
            buf[at % len(buf)] = payload[0]
        elif op == "span":
            at %= len(buf)
            buf[at : at + len(payload)] = payload
        elif op == "truncate":
            del buf[max(at, 1):]
        else:  # a whole page of zeros
            page = (at % len(buf)) // 4096 * 4096
            buf[page : page + 4096] = bytes(min(4096, len(buf) - page))
    return bytes(buf)


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="memscope-fuzz-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@FUZZ
@given(data=st.data())
def test_byte_mutations(base: Base, workdir: Path, data: st.DataObject) -> None:
    ops = data.draw(byte_mutations(len(base.data)))
    path = workdir / f"b{next(_COUNTER)}.memscope"
    path.write_bytes(_mutate_bytes(base.data, ops))
    try:
        _exercise(str(path), data.draw(st.sampled_from(_FORMATS)), "bytes")
    finally:
        _remove(path)


_JSONISH = ["[]", "{}", "[1, 2]", '{"a": 1}', '"x"', "null", "true", "NaN", "Infinity",
            "1e999", "-1", "[[[]]]", '{"copied": "x"}', '["a", 1, null]', "{oops", "",
            "[/]", "[bold]x", "\x1b]0;t\x07", "\udcff"]
VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2**62, -(2**62), 4096]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(_JSONISH),
    st.text(max_size=40).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    st.binary(max_size=24),
)


def _tables(conn: sqlite3.Connection) -> list[tuple[str, list[str]]]:
    out = []
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                " AND name NOT LIKE 'sqlite_%' ORDER BY name"):
        cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')]
        out.append((name, cols))
    return out


@FUZZ
@given(data=st.data())
def test_value_mutations(base: Base, workdir: Path, data: st.DataObject) -> None:
    path = workdir / f"v{next(_COUNTER)}.memscope"
    path.write_bytes(base.data)
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            _mutate_values(conn, data)
        _exercise(str(path), data.draw(st.sampled_from(_FORMATS)), "values")
    finally:
        _remove(path)


def _remove(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def _mutate_values(conn: sqlite3.Connection, data: st.DataObject) -> None:
    tables = _tables(conn)
    for _ in range(data.draw(st.integers(1, 3))):
        table, cols = data.draw(st.sampled_from(tables))
        rowids = [r[0] for r in conn.execute(f'SELECT rowid FROM "{table}"')]
        if not rowids:
            continue
        rowid = rowids[data.draw(st.integers(0, len(rowids) - 1))]
        col = data.draw(st.sampled_from(cols))
        value = data.draw(VALUES)
        if isinstance(value, str) and "\udcff" in value:
            value = value.encode("utf-8", "surrogateescape")  # invalid UTF-8 in a TEXT cell
            sql = f'UPDATE "{table}" SET "{col}" = CAST(? AS TEXT) WHERE rowid = ?'
        else:
            sql = f'UPDATE "{table}" SET "{col}" = ? WHERE rowid = ?'
        try:
            conn.execute(sql, (value, rowid))
            conn.commit()
        except sqlite3.IntegrityError:  # NOT NULL / CHECK / UNIQUE: the writer's own guards
            conn.rollback()
    conn.commit()
    conn.execute("PRAGMA journal_mode = DELETE")
