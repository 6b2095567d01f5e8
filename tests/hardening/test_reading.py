"""Reading a recording has no side effects and works wherever the file can be read."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from memscope.recording import CHECKPOINT_S
from tests.hardening._support import HAVE_SETPRIV, NOCAP, invoke, make_recording, memscope_cmd


def listing(directory: Path) -> dict[str, tuple[int, int]]:
    return {n: (os.stat(directory / n).st_size, os.stat(directory / n).st_mtime_ns)
            for n in os.listdir(directory)}


def record(path: Path, *args: str) -> None:
    done = subprocess.run(memscope_cmd("run", "-q", "-i", "0.05", "-o", str(path), "--",
                                       "sh", "-c", "sleep 1", *args),
                          capture_output=True, text=True, timeout=120, cwd=path.parent)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["plain.memscope", "a?b.memscope", "c#d.memscope",
                                  "e%20f.memscope", "g%3Fh.memscope"])
def test_report_leaves_nothing_and_takes_any_name(tmp_path: Path, name: str) -> None:
    # GIVEN a real recording whose name looks like an SQLite URI
    path = tmp_path / name
    record(path)
    before = listing(tmp_path)
    assert sorted(before) == [name]  # the writer merged and removed its WAL
    # WHEN it is reported, checked and baselined
    for args in (["report", str(path)], ["report", str(path), "-f", "json"],
                 ["check", str(path), "-r", "tree.processes >= 1"]):
        code, out = invoke(*args)
        assert code == 0, out
    # THEN nothing appeared or changed beside it (no -wal, -shm, or stray files)
    assert listing(tmp_path) == before
    assert not [n for n in os.listdir(".") if n.startswith(("a?b", "c#d", "e%20f", "g%3Fh"))]


@pytest.mark.skipif(not HAVE_SETPRIV, reason="needs root and setpriv to drop capabilities")
def test_report_in_a_read_only_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    make_recording(str(ro / "r.memscope"))
    os.chmod(ro, 0o555)
    try:
        done = subprocess.run([*NOCAP, *memscope_cmd("report", str(ro / "r.memscope"))],
                              capture_output=True, text=True, timeout=120)
        # A process without CAP_DAC_OVERRIDE really cannot write there:
        probe = subprocess.run([*NOCAP, "touch", str(ro / "probe")], capture_output=True)
    finally:
        os.chmod(ro, 0o755)
    assert probe.returncode != 0
    assert done.returncode == 0, done.stderr
    assert "Tree totals" in done.stdout
    assert os.listdir(ro) == ["r.memscope"]


def _children(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    if int(fh.read().rsplit(b")", 1)[1].split()[1]) == pid:
                        out.append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    return out


@pytest.fixture
def killed_recording(tmp_path: Path) -> Path:
    """A recording whose memscope was SIGKILLed: main file + a WAL holding ticks the main file
    lacks. Under heavy load the kill can land just after a checkpoint: then it is tried again."""
    from memscope.recording import open_recording

    for attempt in range(5):
        path = _kill_a_recording(tmp_path / f"k{attempt}.memscope")
        rec = open_recording(str(path))
        try:
            whole = len(rec.ticks())
        finally:
            rec.close()
        if whole > _main_file_ticks(path):
            return path
    raise AssertionError("every kill landed right after a checkpoint")


def _kill_a_recording(path: Path) -> Path:
    proc = subprocess.Popen(memscope_cmd("run", "-q", "-i", "0.05", "-o", str(path), "--",
                                         "sleep", "300"), stderr=subprocess.DEVNULL)
    try:
        # Wait until the writer has checkpointed at least once and committed more since
        # (the WAL is newer than the main file): the kill then loses that to the main file.
        wal = Path(f"{path}-wal")
        deadline = time.monotonic() + 60 + 10 * CHECKPOINT_S
        while time.monotonic() < deadline:
            try:
                main, log = path.stat(), wal.stat()
            except FileNotFoundError:
                main = log = None
            if (main is not None and log is not None and main.st_size > 16 * 1024
                    and log.st_mtime_ns - main.st_mtime_ns > 200_000_000):
                break
            time.sleep(0.02)
        kids = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for kid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert Path(f"{path}-wal").stat().st_size > 0, "no hot WAL left behind"
    return path


def _ticks(report_json: str) -> int:
    return int(json.loads(report_json)["sampler"]["ticks"])


def test_killed_recording_main_file_is_complete_up_to_a_checkpoint(killed_recording: Path,
                                                                    tmp_path: Path) -> None:
    # GIVEN only the main file (the WAL lost), THEN it is still a readable recording
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(killed_recording, alone / "k.memscope")
    assert (alone / "k.memscope").stat().st_size > 4096
    code, out = invoke("report", str(alone / "k.memscope"), "-f", "json")
    assert code == 0, out
    assert _ticks(out) >= 5


def test_killed_recording_reads_whole_in_a_writable_directory(killed_recording: Path) -> None:
    directory = killed_recording.parent
    before = listing(directory)
    code, out = invoke("report", str(killed_recording), "-f", "json")
    assert code == 0, out
    with_wal = _ticks(out)
    # the WAL's ticks are there too: more than the main file alone holds
    conn_ticks = _main_file_ticks(killed_recording)
    assert with_wal > conn_ticks
    assert listing(directory) == before  # nothing merged into, created or removed


def _main_file_ticks(path: Path) -> int:
    import sqlite3
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.skipif(not HAVE_SETPRIV, reason="needs root and setpriv to drop capabilities")
def test_killed_recording_reads_in_a_read_only_directory(killed_recording: Path,
                                                         tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    for name in os.listdir(killed_recording.parent):
        if name.startswith(killed_recording.name):
            shutil.copy(killed_recording.parent / name, ro / name)
    before = listing(ro)
    os.chmod(ro, 0o555)
    try:
        done = subprocess.run([*NOCAP, *memscope_cmd("report", str(ro / killed_recording.name),
                                                     "-f", "json")],
                              capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(ro, 0o755)
    assert done.returncode == 0, done.stderr
    assert _ticks(done.stdout) > _main_file_ticks(ro / killed_recording.name)
    assert listing(ro) == before
