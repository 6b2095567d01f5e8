"""The recording file: round trip, and every way a file can be the wrong one."""

from __future__ import annotations

import os
import sqlite3

import pytest

from memscope.errors import RecordingError
from memscope.recording import SAMPLE_COLUMNS, SCHEMA_VERSION, RecordingWriter, open_recording


def write_small(path: str) -> None:
    w = RecordingWriter(path, {"mode": "run", "command": ["python3", "app.py"]})
    root = w.add_process(pid=10, start_ticks=5, ppid=1, parent_id=None, role="root",
                         cmdline=["python3", "app.py"], exe="/usr/bin/python3.11",
                         python_version="3.11", started_at=100.0)
    child = w.add_process(pid=11, start_ticks=6, ppid=10, parent_id=root, role="worker",
                          cmdline=["<script>alert(1)</script>"], exe=None, python_version=None,
                          started_at=100.5)
    full = [1000, 600, 400, 100, 0, 0, 400, 0, 0, 500, 100, 0, 400, 300]
    w.add_samples([(root, 100.0, *full), (child, 100.5, 900, *([None] * 12), 300)])
    w.mark_exited(child, 101.0, -9)
    w.flush()
    w.close()


def test_round_trip(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    write_small(path)
    rec = open_recording(path)
    assert rec.meta["schema_version"] == SCHEMA_VERSION
    assert rec.meta["command"] == ["python3", "app.py"]
    root, child = rec.processes
    assert (root.role, child.role, child.parent_id) == ("root", "worker", root.id)
    assert child.cmdline == ["<script>alert(1)</script>"]
    assert (child.exited_at, child.exit_code) == (101.0, -9)
    samples = list(rec.samples())
    assert [s.t for s in samples] == [100.0, 100.5]
    assert samples[0]["uss"] == 400 and samples[1]["uss"] is None
    assert set(samples[0].values) == set(SAMPLE_COLUMNS)


def test_not_sqlite(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "x.memscope")
    with open(path, "w") as fh:
        fh.write("hello\n")
    with pytest.raises(RecordingError, match="not a memscope recording"):
        open_recording(path)


def test_foreign_sqlite(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "other.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(RecordingError, match="foreign SQLite"):
        open_recording(path)


def test_newer_schema(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    write_small(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(RecordingError, match="newer than this memscope supports"):
        open_recording(path)


def test_truncated(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    write_small(path)
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 3])
    with pytest.raises(RecordingError, match="corrupt or truncated"):
        rec = open_recording(path)
        list(rec.samples())


def test_missing(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(RecordingError, match="no such recording"):
        open_recording(os.path.join(str(tmp_path), "nope.memscope"))


def test_same_pid_and_start_tick_twice_is_two_rows(tmp_path: os.PathLike[str]) -> None:
    # GIVEN a PID recycled within one clock tick: two processes with the same (pid, start_ticks)
    path = os.path.join(str(tmp_path), "r.memscope")
    writer = RecordingWriter(path, {"mode": "run"})
    fields = {"pid": 4242, "start_ticks": 777, "ppid": 1, "parent_id": None, "role": "root",
              "cmdline": ["a"], "exe": None, "python_version": None}
    first = writer.add_process(**fields, started_at=1.0)
    second = writer.add_process(**{**fields, "cmdline": ["b"]}, started_at=1.005)
    writer.close()
    # THEN both are kept, the newcomer numbered by `reuse`, instead of an integrity error
    rec = open_recording(path)
    assert [p.command for p in rec.processes] == ["a", "b"]
    reuse = dict(rec.conn.execute("SELECT id, reuse FROM processes").fetchall())
    assert reuse == {first: 0, second: 1}
