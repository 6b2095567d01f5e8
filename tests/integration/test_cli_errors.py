"""Bad input: one line, a documented exit code, never a traceback."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sysconfig
import time

import pytest
from click.testing import CliRunner

from memscope.cli import cli
from memscope.recording import SCHEMA_VERSION, RecordingWriter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("memscope: error:")]
    assert len(lines) == 1, output
    return lines[0]


def test_unknown_pid() -> None:
    code, out = invoke("attach", "4194303")
    assert code == 2
    assert "no process with PID 4194303" in one_error_line(out)


def test_zombie_pid() -> None:
    zombie = subprocess.Popen(["true"])
    time.sleep(0.3)  # exited, never waited for: a zombie
    try:
        code, out = invoke("attach", str(zombie.pid))
        assert code == 2
        assert "zombie" in one_error_line(out)
    finally:
        zombie.wait()


@pytest.mark.parametrize("args", [["-i", "0"], ["-i", "-1"], ["--duration", "0"], ["-i", "abc"]])
def test_invalid_interval_or_duration(args: list[str]) -> None:
    code, out = invoke("run", *args, "--", "true")
    assert code == 2
    assert "Invalid value" in out


def test_command_not_found(tmp_path: os.PathLike[str]) -> None:
    code, out = invoke("run", "-o", os.path.join(str(tmp_path), "r.memscope"), "--",
                       "no-such-command-xyz")
    assert code == 127
    assert "command not found: no-such-command-xyz" in one_error_line(out)


def test_missing_command() -> None:
    code, _ = invoke("run")
    assert code == 2


def test_report_of_not_a_recording(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "notes.txt")
    with open(path, "w") as fh:
        fh.write("not a recording\n")
    code, out = invoke("report", path)
    assert code == 2
    assert "not a memscope recording" in one_error_line(out)


def test_report_of_newer_schema(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    RecordingWriter(path, {"mode": "run"}).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    code, out = invoke("report", path)
    assert code == 2
    assert "newer than this memscope supports" in one_error_line(out)


def test_report_of_truncated_recording(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    w = RecordingWriter(path, {"mode": "run"})
    pid = w.add_process(pid=1, start_ticks=1, ppid=0, parent_id=None, role="root", cmdline=["x"],
                        exe=None, python_version=None, started_at=1.0)
    w.add_samples((pid, 1.0 + i, 100, *([None] * 12), 1) for i in range(5000))
    w.close()
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)
    code, out = invoke("report", path)
    assert code == 2
    assert "corrupt or truncated" in one_error_line(out)


def test_unknown_format(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    RecordingWriter(path, {"mode": "run"}).close()
    code, out = invoke("report", path, "--format", "yaml")
    assert code == 2
    assert "unknown report format 'yaml'" in one_error_line(out)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="needs root and runuser to become an unprivileged user")
def test_denied_access_has_a_hint() -> None:
    # GIVEN memscope running as 'nobody' against a root-owned process (this test process)
    site = sysconfig.get_paths()["purelib"]
    env_path = f"{site}:{REPO}"
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("no system python3 that an unprivileged user can execute")
    done = subprocess.run(
        ["runuser", "-u", "nobody", "--", "env", f"PYTHONPATH={env_path}", "/usr/bin/python3",
         "-m", "memscope", "attach", str(os.getpid()), "--duration", "0.2"],
        capture_output=True, text=True, timeout=60, cwd="/tmp",
    )
    if "No module named" in done.stderr:
        pytest.skip(f"system python cannot import memscope's dependencies: {done.stderr.strip()}")
    assert done.returncode == 2, done.stderr
    assert "permission denied reading process" in one_error_line(done.stderr)
    assert "CAP_SYS_PTRACE" in done.stderr
    assert "Traceback" not in done.stderr


def test_unwritable_output_fails_before_the_command_starts(tmp_path: os.PathLike[str]) -> None:
    marker = os.path.join(str(tmp_path), "started")
    code, out = invoke("run", "-o", os.path.join(str(tmp_path), "no", "such", "dir", "r.memscope"),
                       "--", "touch", marker)
    assert code == 2
    assert "does not exist" in one_error_line(out)
    assert not os.path.exists(marker)  # the command never ran


def test_recording_error_mid_run_is_one_line(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a disk that fills up after a few ticks
    ticks = []

    def add_tick(self: RecordingWriter, *args: object) -> None:
        ticks.append(args)
        if len(ticks) > 3:
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(RecordingWriter, "add_tick", add_tick)
    path = os.path.join(str(tmp_path), "r.memscope")
    code, out = invoke("run", "-q", "-o", path, "--", "sleep", "5")
    # THEN one line, exit 2, and the command was stopped rather than orphaned
    assert code == 2
    assert "cannot write the recording (database or disk is full)" in one_error_line(out)
    assert len(ticks) == 4
