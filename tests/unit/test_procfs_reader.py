"""The reader over a captured /proc root, and the one boundary for OS errors."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time

import pytest

from memscope.procfs import AccessDenied, ProcessGone, ProcFS, boundary, parse_smaps_rollup
from tests.conftest import CAPTURED_PROC

PARENT, CHILD, HOSTILE, GRANDCHILD = 14337, 14339, 14340, 14341


def test_reader_over_captured_root() -> None:
    procfs = ProcFS(CAPTURED_PROC)
    assert sorted(procfs.pids()) == [1, PARENT, CHILD, HOSTILE, GRANDCHILD]
    assert procfs.stat(HOSTILE).comm == "x) (y z"
    assert procfs.cmdline(HOSTILE) == ["/tmp/x) (y z", "30"]
    assert procfs.exe(HOSTILE) == "/tmp/x) (y z"
    assert procfs.rollup(PARENT).rss == 17408 * 1024


def test_missing_process_is_gone() -> None:
    procfs = ProcFS(CAPTURED_PROC)
    with pytest.raises(ProcessGone) as info:
        procfs.stat(999_999)
    assert info.value.pid == 999_999


@pytest.mark.parametrize(
    ("code", "error"),
    [(errno.ENOENT, ProcessGone), (errno.ESRCH, ProcessGone), (errno.EACCES, AccessDenied),
     (errno.EPERM, AccessDenied), (errno.EIO, ProcessGone)],
)
def test_boundary_translates_errno(code: int, error: type[Exception]) -> None:
    with pytest.raises(error), boundary(42, "smaps_rollup"):
        raise OSError(code, os.strerror(code))


def test_other_os_errors_are_not_hidden() -> None:
    with pytest.raises(OSError, match="No space"), boundary(42, "stat"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_rollup_falls_back_to_smaps_without_smaps_rollup(tmp_path: os.PathLike[str]) -> None:
    # GIVEN a kernel older than 4.14: no smaps_rollup file
    root = os.path.join(str(tmp_path), "proc")
    shutil.copytree(CAPTURED_PROC, root, symlinks=True)
    os.unlink(os.path.join(root, str(PARENT), "smaps_rollup"))
    with open(os.path.join(CAPTURED_PROC, str(PARENT), "smaps_rollup"), "rb") as fh:
        real = parse_smaps_rollup(fh.read())
    # WHEN the reader is asked for the totals THEN it sums smaps
    summed = ProcFS(root).rollup(PARENT)
    assert summed.rss == real.rss
    assert summed.uss == real.uss
    assert abs(summed.pss - real.pss) < 64 * 1024


def test_live_process_read() -> None:
    procfs = ProcFS()
    me = procfs.stat(os.getpid())
    assert me.pid == os.getpid()
    assert procfs.rollup(os.getpid()).rss > 1024 * 1024


def test_exe_of_a_vanished_or_zombie_process_is_none() -> None:
    procfs = ProcFS(CAPTURED_PROC)
    assert procfs.exe(999_999) is None  # never existed / already gone
    zombie = subprocess.Popen(["true"])
    time.sleep(0.3)
    try:
        assert ProcFS().exe(zombie.pid) is None  # a zombie has no exe link target
    finally:
        zombie.wait()
