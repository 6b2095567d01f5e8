"""The sites capture's fallback: a worker that exits before its pages are read gets its COW
sites from its parent's copy of the pages its last quick scan found copied.

Real processes: tests/cow/workloads.py `ints` (a parent holding 2M ints forks a worker that
iterates them, copying the int pages by reference-count touches, then holds).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from memscope.cow.copied_sites import heap_in_pages
from memscope.cow.pagemap import read_pages
from memscope.cow.scan import quick_scan
from memscope.cow.site_estimate import sample_pages
from memscope.cow.sites import PAGE_BUDGET
from memscope.leaks.hook import LeakConfig, LeakHook
from memscope.procfs import ProcFS
from memscope.tree import Member

WORKLOADS = Path(__file__).parent.parent / "cow" / "workloads.py"


def test_a_worker_gone_before_its_pages_are_read_gets_them_from_its_parent(
    tmp_path: Path,
) -> None:
    # GIVEN a worker that copied its parent's int pages, quick-scanned while alive
    proc = subprocess.Popen([sys.executable, str(WORKLOADS), "ints"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        parent, child, _ = proc.stdout.readline().split()
        ppid, pid = int(parent), int(child)
        procfs = ProcFS()
        scan = quick_scan(pid, ppid, procfs)
        assert scan.copied_pages is not None
        assert len(scan.copied_pages) * 4096 == scan.copied_bytes > 40 << 20
        sample = sample_pages(scan.copied_pages, PAGE_BUDGET)
        # AND the worker has exited before its sites capture (its parent, stopped, has not
        # reaped it yet: a zombie with no memory, as a worker is for a moment at its exit)
        member = Member(pid=pid, start_ticks=procfs.stat(pid).start_ticks, ppid=ppid,
                        role="worker", parent_key=None)
        os.kill(ppid, signal.SIGSTOP)
        deadline = time.monotonic() + 30
        # (stopped for sure before the worker dies: a parent still in waitpid when the SIGSTOP
        # lands reaps a child already dead before it stops)
        while procfs.stat(ppid).state != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procfs.stat(ppid).state == "T"
        os.kill(pid, signal.SIGKILL)
        while procfs.maps(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procfs.maps(pid) == []
        hook = LeakHook(LeakConfig(run_dir=str(tmp_path)))
        hook._procfs = procfs
        hook._fallback[member.key] = sample
        # WHEN its pages are captured
        hook._capture(member, 0.0)
        # THEN they are the parent's copy of the sampled copied pages, all read
        captured = hook._pages[member.key]
        assert np.array_equal(captured.copied, sample[0]) and captured.rate == sample[1]
        assert captured.ok.all()
        parent_pages, _ = read_pages(procfs, ppid, sample[0])
        assert np.array_equal(captured.pages, parent_pages)
        # AND they hold the ints the worker copied
        heap = heap_in_pages(ppid, captured.copied, captured.pages, captured.ok, procfs)
        names = np.array(heap.type_names)[heap.type_index]
        assert (names == "int").mean() > 0.9
        # AND the recording will say where the pages came from
        assert any("parent's copy" in n[2] for n in hook.notes._pending)
    finally:
        proc.kill()  # (SIGKILL ends a stopped process too)
        proc.wait()
