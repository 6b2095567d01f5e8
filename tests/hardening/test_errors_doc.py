"""docs/errors.md's table is reproduced here row by row: the doc and the code stay in step."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hardening._support import (
    HAVE_SETPRIV,
    NOCAP,
    invoke,
    make_recording,
    memscope_cmd,
    zombie,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
_ROW = re.compile(r"^\| `([a-z-]+)` \| (.*?) \| (\d+) \| `(.*)` \|$")


def doc_rows() -> dict[str, tuple[int, str]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            rows[m[1]] = (int(m[3]), m[4])
    return rows


Scenario = Callable[[Path], tuple[int, str]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def add(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        return fn
    return add


def _rec(tmp: Path) -> str:
    return make_recording(str(tmp / "r.memscope"))


def _edit(path: str, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


@scenario("output-exists")
def _(tmp: Path) -> tuple[int, str]:
    (tmp / "x.memscope").write_bytes(b"mine")
    return invoke("run", "-q", "-o", str(tmp / "x.memscope"), "--", "true")


@scenario("output-force-foreign")
def _(tmp: Path) -> tuple[int, str]:
    (tmp / "notes.txt").write_text("precious")
    return invoke("run", "-q", "--force", "-o", str(tmp / "notes.txt"), "--", "true")


@scenario("output-device")
def _(tmp: Path) -> tuple[int, str]:
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    # A private node with /dev/null's numbers: a regression must not break the machine's.
    os.mknod(tmp / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return invoke("run", "-q", "-o", str(tmp / "null"), "--", "true")


@scenario("output-fifo")
def _(tmp: Path) -> tuple[int, str]:
    os.mkfifo(tmp / "fifo")
    return invoke("run", "-q", "-o", str(tmp / "fifo"), "--", "true")


@scenario("output-symlink")
def _(tmp: Path) -> tuple[int, str]:
    os.symlink(tmp / "elsewhere", tmp / "link")
    return invoke("run", "-q", "-o", str(tmp / "link"), "--", "true")


@scenario("output-stdout")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("run", "-q", "-o", "-", "--", "true")


@scenario("report-output-foreign")
def _(tmp: Path) -> tuple[int, str]:
    (tmp / "notes.txt").write_text("precious")
    return invoke("report", _rec(tmp), "-o", str(tmp / "notes.txt"))


@scenario("report-output-fifo")
def _(tmp: Path) -> tuple[int, str]:
    os.mkfifo(tmp / "fifo")
    return invoke("report", _rec(tmp), "-o", str(tmp / "fifo"))


@scenario("recording-missing")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("report", str(tmp / "nosuch.memscope"))


@scenario("recording-not-sqlite")
def _(tmp: Path) -> tuple[int, str]:
    (tmp / "r.memscope").write_text("hello")
    return invoke("report", str(tmp / "r.memscope"))


@scenario("recording-foreign")
def _(tmp: Path) -> tuple[int, str]:
    conn = sqlite3.connect(tmp / "db.sqlite")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return invoke("report", str(tmp / "db.sqlite"))


@scenario("recording-newer")
def _(tmp: Path) -> tuple[int, str]:
    path = _rec(tmp)
    _edit(path, "PRAGMA user_version = 99")
    return invoke("report", path)


@scenario("recording-corrupt")
def _(tmp: Path) -> tuple[int, str]:
    path = _rec(tmp)
    with open(path, "r+b") as fh:
        fh.truncate(4096 * 3)
    return invoke("report", path)


@scenario("meta-bad-json")
def _(tmp: Path) -> tuple[int, str]:
    path = _rec(tmp)
    _edit(path, "UPDATE meta SET value = '{oops' WHERE key = 'started_at'")
    return invoke("report", path)


@scenario("meta-wrong-type")
def _(tmp: Path) -> tuple[int, str]:
    path = _rec(tmp)
    # found by `make fuzz`: datetime.fromtimestamp() raised OSError (EOVERFLOW) in the header
    _edit(path, "UPDATE meta SET value = '67768036191676796' WHERE key = 'started_at'")
    return invoke("check", path, "-r", "tree.pss.peak <= 1GiB")


@scenario("process-row")
def _(tmp: Path) -> tuple[int, str]:
    path = _rec(tmp)
    _edit(path, "UPDATE processes SET cmdline = '{}' WHERE pid = 11")
    return invoke("baseline", "save", path, "-o", str(tmp / "b.json"))


@scenario("cow-detail-damaged")
def _(tmp: Path) -> tuple[int, str]:
    path = _rec(tmp)
    # a scan of the worker (processes.id 2) whose compact detail is not zlib-compressed JSON
    _edit(path, "INSERT INTO cow_scans (id, process_id, pid, parent_pid, t, mode,"
          " inherited_bytes, copied_bytes, shared_bytes, new_private_bytes, swapped_bytes,"
          " target, duration_s) VALUES (1, 2, 11, 10, 102.0, 'pfn', 4096, 4096, 0, 0, 0,"
          " 'CPython 3.11', 0.1)")
    _edit(path, "INSERT INTO cow_details (scan_id, data) VALUES (1, ?)", b"not zlib")
    return invoke("report", path)


@scenario("damaged-values")
def _(tmp: Path) -> tuple[int, str]:
    path = _rec(tmp)
    # A plain (not yet chunked) row, as a killed writer leaves them, holding text for a number.
    _edit(path, "INSERT INTO samples (process_id, t, rss, uss) VALUES (2, 102.5, 1, 'lots')")
    return invoke("report", path)


@scenario("option-not-finite")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("run", "-q", "-i", "nan", "-o", str(tmp / "r.memscope"), "--", "true")


@scenario("rule-too-large")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("check", _rec(tmp), "-f", "json", "-r", "tree.pss.peak <= 1e308TiB")


@scenario("scan-zombie")
def _(tmp: Path) -> tuple[int, str]:
    proc = zombie()
    try:
        return invoke("scan", str(proc.pid))
    finally:
        proc.wait()


@scenario("scan-kernel-thread")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("scan", "2")


@scenario("scan-no-parent")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("scan", "1")


_FORKED = """
import os, sys, time
data = list(range(300_000))
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    for x in data:
        pass
    os.write(w, b"x")
    time.sleep(120)
    os._exit(0)
os.read(r, 1)
print(pid, flush=True)
sys.stdin.read()
os.kill(pid, 9)
"""


def forked_target(prefix: list[str]) -> tuple[subprocess.Popen[str], int]:
    """A parent and a forked child that copied pages; run under `prefix` (e.g. NOCAP)."""
    proc = subprocess.Popen([*prefix, sys.executable, "-c", _FORKED], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


@scenario("scan-pfn-hidden")
def _(tmp: Path) -> tuple[int, str]:
    if not HAVE_SETPRIV:
        pytest.skip("needs root and setpriv to run without capabilities")
    proc, child = forked_target(NOCAP)
    try:
        done = subprocess.run([*NOCAP, *memscope_cmd("scan", "--mode", "pfn", str(child))],
                              capture_output=True, text=True, timeout=120)
    finally:
        proc.communicate("", timeout=60)
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout + done.stderr


@scenario("attach-unknown")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("attach", "4194303")


@scenario("attach-zombie")
def _(tmp: Path) -> tuple[int, str]:
    proc = zombie()
    try:
        return invoke("attach", str(proc.pid), "-o", str(tmp / "r.memscope"))
    finally:
        proc.wait()


@scenario("attach-kernel-thread")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("attach", "2", "-o", str(tmp / "r.memscope"))


@scenario("attach-self")
def _(tmp: Path) -> tuple[int, str]:
    # In-process: the CLI runs in this very process, whose PID is os.getpid().
    return invoke("attach", str(os.getpid()), "-o", str(tmp / "r.memscope"), "--duration", "1")


@scenario("command-not-found")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("run", "-q", "-o", str(tmp / "r.memscope"), "--", "no-such-command-xyz")


@scenario("command-not-executable")
def _(tmp: Path) -> tuple[int, str]:
    script = tmp / "script.sh"
    script.write_text("#!/bin/sh\n")
    os.chmod(script, 0o644)
    return invoke("run", "-q", "-o", str(tmp / "r.memscope"), "--", str(script))


@scenario("check-broken")
def _(tmp: Path) -> tuple[int, str]:
    return invoke("check", _rec(tmp), "-r", "tree.pss.peak <= 1MiB")


def test_every_row_has_a_scenario_and_every_scenario_a_row() -> None:
    rows = doc_rows()
    assert len(rows) >= 25
    assert sorted(rows) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(doc_rows()))
def test_row(name: str, tmp_path: Path) -> None:
    code, message = doc_rows()[name]
    got, output = SCENARIOS[name](tmp_path)
    assert got == code, output
    assert message in output, output
    if code == 2:  # one error line (memscope's, or click's for a bad option value), never more
        errors = [line for line in output.splitlines()
                  if line.startswith(("memscope: error:", "Error:"))]
        assert len(errors) == 1, output
        assert message in errors[0]
