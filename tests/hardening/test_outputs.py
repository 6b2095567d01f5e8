"""-o never destroys what memscope did not write; reports are written atomically."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from memscope.outputs import is_recording_file
from tests.hardening._support import error_lines, invoke, make_recording, memscope_cmd


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_run_does_not_replace_a_device_node(tmp_path: Path) -> None:
    # GIVEN a character device (the issue's `mknod ./x c 1 3`: /dev/null's numbers)
    dev = tmp_path / "x"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    # WHEN memscope is told to record there, even with --force
    for extra in ([], ["--force"]):
        code, out = invoke("run", "-q", *extra, "-o", str(dev), "--", "true")
        # THEN it refuses and the node is still a device
        assert code == 2 and "is a character device" in error_lines(out)[0]
        assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_run_refuses_fifo_and_symlink_and_leaves_them(tmp_path: Path) -> None:
    fifo, link, target = tmp_path / "fifo", tmp_path / "link", tmp_path / "target.txt"
    os.mkfifo(fifo)
    target.write_text("precious")
    os.symlink(target, link)
    for path in (fifo, link):
        code, _ = invoke("run", "-q", "--force", "-o", str(path), "--", "true")
        assert code == 2
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.path.islink(link) and target.read_text() == "precious"


def test_existing_recording_needs_force_and_force_replaces_only_recordings(tmp_path: Path) -> None:
    old = make_recording(str(tmp_path / "r.memscope"))
    before = os.stat(old).st_ino
    code, out = invoke("run", "-q", "-o", old, "--", "true")
    assert code == 2 and "already exists" in out and "--force" in out
    assert os.stat(old).st_ino == before
    code, out = invoke("run", "-q", "--force", "-o", old, "--", "true")
    assert code == 0, out
    assert is_recording_file(old)
    code, out = invoke("report", old, "-f", "json")
    assert code == 0 and '"command": [\n    "true"' in out
    foreign = tmp_path / "notes.memscope"
    foreign.write_text("precious")
    code, _ = invoke("run", "-q", "--force", "-o", str(foreign), "--", "true")
    assert code == 2 and foreign.read_text() == "precious"


def test_default_names_never_collide(tmp_path: Path) -> None:
    # GIVEN a file that has the default name of the next run (PID unknown: take them all)
    done = subprocess.run(memscope_cmd("run", "-q", "--", "true"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (first,) = os.listdir(tmp_path)
    # a second run with a PID equal to the first's is simulated by the name taken
    from memscope.outputs import unique_path
    assert unique_path(str(tmp_path / first)) == str(tmp_path / first.replace(".memscope",
                                                                                "-2.memscope"))


def test_report_refuses_foreign_file_replaces_own_and_writes_atomically(tmp_path: Path) -> None:
    rec = make_recording(str(tmp_path / "r.memscope"))
    foreign = tmp_path / "report.html"
    foreign.write_text("<html>my own page</html>")
    code, out = invoke("report", rec, "-f", "html", "-o", str(foreign))
    assert code == 2 and "was not written by memscope" in out
    assert foreign.read_text() == "<html>my own page</html>"
    for fmt in ("text", "json", "csv", "mprof", "prometheus", "html"):
        out_path = tmp_path / f"out.{fmt}"
        for _ in range(2):  # the second time it replaces its own output
            code, out = invoke("report", rec, "-f", fmt, "-o", str(out_path))
            assert code == 0, (fmt, out)
        assert out_path.stat().st_size > 0
    # no temp file is left behind
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".memscope-")]


def test_report_to_fifo_refused_but_dash_is_stdout(tmp_path: Path) -> None:
    rec = make_recording(str(tmp_path / "r.memscope"))
    os.mkfifo(tmp_path / "fifo")
    code, out = invoke("report", rec, "-o", str(tmp_path / "fifo"))
    assert code == 2 and "-o -" in out
    code, out = invoke("report", rec, "-o", "-")
    assert code == 0 and "Tree totals" in out


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_report_does_not_replace_a_device_node(tmp_path: Path) -> None:
    # A private node with /dev/null's numbers: a regression must not break the machine's.
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    rec = make_recording(str(tmp_path / "r.memscope"))
    code, out = invoke("report", rec, "-o", str(dev))
    assert code == 2 and "is a character device" in out
    assert stat.S_ISCHR(os.lstat(dev).st_mode)


def test_baseline_save_refuses_a_foreign_file(tmp_path: Path) -> None:
    rec = make_recording(str(tmp_path / "r.memscope"))
    foreign = tmp_path / "base.json"
    foreign.write_text('{"mine": 1}')
    code, out = invoke("baseline", "save", rec, "-o", str(foreign))
    assert code == 2 and foreign.read_text() == '{"mine": 1}'
    code, out = invoke("baseline", "save", rec, "-o", str(tmp_path / "new.json"))
    assert code == 0, out
    code, out = invoke("baseline", "save", rec, "-o", str(tmp_path / "new.json"))
    assert code == 0, out
