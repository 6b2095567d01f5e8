"""A worker scanned while it exits has released its memory: its maps are empty, and a scan
then recorded 0 bytes copied ("no executable image: not Python") over its real last scan, so
the report's latest scan and its advice went blank (seen in test_frameworks::test_uwsgi under
load: the final scans at shutdown). Scanning such a process raises ProcessGone instead."""

from __future__ import annotations

import os
import time

import pytest

from memscope.cow.scan import quick_scan, scan_process
from memscope.procfs import ProcessGone, ProcFS


def test_a_zombie_is_gone_for_both_scans() -> None:
    # GIVEN a real child that exited and is not reaped yet (a zombie: no memory left)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        procfs = ProcFS()
        deadline = time.monotonic() + 30
        while procfs.stat(pid).state != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.01)
        assert procfs.maps(pid) == []
        # THEN neither scan records it: both say it is gone
        with pytest.raises(ProcessGone):
            quick_scan(pid, os.getpid(), procfs)
        with pytest.raises(ProcessGone):
            scan_process(pid, os.getpid(), procfs)
    finally:
        os.waitpid(pid, 0)
