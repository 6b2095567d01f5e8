"""When the COW scheduler scans: baseline, fault growth, max gap, fixed interval, budget, on demand.

The clock is injected and the scanner records its calls, so the schedule is tested alone;
the processes are real (this test process and a `sleep` child), so fault counts are real.
"""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memscope.cow._model import CowScan
from memscope.cow.schedule import CowScheduler, install_sigusr1
from memscope.cow.store import read_scans
from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter, open_recording
from memscope.sampler import TickContext
from memscope.tree import Member


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scanner:
    """Records (pid, ppid) per call; each scan 'costs' `cost` seconds of the budget."""

    def __init__(self, clock: Clock) -> None:
        self.calls: list[tuple[int, int]] = []
        self.clock = clock

    def __call__(self, pid: int, ppid: int, procfs: ProcFS) -> CowScan:
        self.calls.append((pid, ppid))
        return CowScan(pid=pid, parent_pid=ppid, scanned_at=self.clock(), mode="pfn",
                       inherited_bytes=0, copied_bytes=0, shared_bytes=0,
                       new_private_bytes=0, swapped_bytes=0, duration_s=0.01)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[TickContext, int]]:
    child = subprocess.Popen(["sleep", "60"])
    writer = RecordingWriter(str(tmp_path / "s.memscope"), {})
    me = os.getpid()
    members = []
    for pid, ppid, role in ((me, os.getppid(), "root"), (child.pid, me, "worker")):
        m = Member(pid=pid, start_ticks=ProcFS().stat(pid).start_ticks, ppid=ppid, role=role,
                   parent_key=None)
        m.record_id = writer.add_process(pid=pid, start_ticks=m.start_ticks, ppid=ppid,
                                         parent_id=None, role=role, cmdline=[], exe=None,
                                         python_version=None, started_at=0.0)
        members.append(m)
    ctx = TickContext(0.0, members, members[0], writer, ProcFS(), {})
    yield ctx, child.pid
    child.kill()
    child.wait()
    writer.close()


def test_baseline_then_max_gap(tree: tuple[TickContext, int]) -> None:
    ctx, child = tree
    clock = Clock()
    scanner = Scanner(clock)
    sched = CowScheduler(clock=clock, scanner=scanner, max_gap=60.0, threaded=False)
    sched(ctx)  # GIVEN a new worker: its baseline scan, against its parent
    assert scanner.calls == [(child, os.getpid())]
    assert sched.copied == {ctx.members[1].key: 0}  # what the live view shows
    clock.now += 30
    sched(ctx)  # a sleeping worker takes no faults: nothing to rescan yet
    assert len(scanner.calls) == 1
    clock.now += 31
    sched(ctx)  # but the timeline gets a point at least every max_gap
    assert len(scanner.calls) == 2
    rec = open_recording(ctx.writer.path)
    ctx.writer.flush()
    assert [s.pid for s in read_scans(rec.conn)[ctx.members[1].record_id]] == [child, child]
    rec.close()


def test_fault_growth_triggers_a_rescan(tree: tuple[TickContext, int]) -> None:
    ctx, _child = tree
    # GIVEN this test process as the worker (its faults are under our control)
    root, worker = ctx.members
    root.pid, root.ppid = os.getppid(), 1
    worker.pid, worker.ppid = os.getpid(), os.getppid()
    clock = Clock()
    scanner = Scanner(clock)
    sched = CowScheduler(clock=clock, scanner=scanner, growth=1 << 20, threaded=False)
    sched(ctx)
    clock.now += 0.5
    sched(ctx)
    assert len(scanner.calls) == 1  # baseline only: no new faults worth 1 MiB
    # WHEN it touches 4 MiB of fresh memory (1024 minor faults)
    with mmap.mmap(-1, 4 << 20) as fresh:
        for offset in range(0, 4 << 20, 4096):
            fresh[offset] = 1
        clock.now += 0.5
        sched(ctx)
    # THEN it is rescanned
    assert len(scanner.calls) == 2


def test_fixed_interval_and_disabled(tree: tuple[TickContext, int]) -> None:
    ctx, _child = tree
    clock = Clock()
    every = Scanner(clock)
    fixed = CowScheduler(clock=clock, scanner=every, interval=10.0, threaded=False)
    off_scanner = Scanner(clock)
    off = CowScheduler(clock=clock, scanner=off_scanner, interval=0, threaded=False)
    for _ in range(25):
        fixed(ctx)
        off(ctx)
        clock.now += 1.0
    assert len(every.calls) == 3  # t=0, 10, 20
    assert off_scanner.calls == []
    off.request()  # on demand, even when disabled
    off(ctx)
    assert len(off_scanner.calls) == 1


def test_budget_spent_stops_scans_until_refilled(tree: tuple[TickContext, int]) -> None:
    ctx, _child = tree
    clock = Clock()
    scanner = Scanner(clock)
    sched = CowScheduler(clock=clock, scanner=scanner, burst=0.5, budget=0.05, max_gap=1.0,
                         min_gap=0.0, threaded=False)
    sched.tokens = -0.5  # a scan just overdrew the bucket
    sched(ctx)
    assert scanner.calls == []
    clock.now += 12.0  # refills 0.6 s of CPU (capped at the 0.5 s burst): above zero
    sched(ctx)
    assert len(scanner.calls) == 1


def test_sigusr1_requests_a_scan(tree: tuple[TickContext, int]) -> None:
    ctx, _child = tree
    clock = Clock()
    scanner = Scanner(clock)
    sched = CowScheduler(clock=clock, scanner=scanner, interval=0, threaded=False)
    restore = install_sigusr1(sched)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        sched(ctx)
    finally:
        restore()
    assert len(scanner.calls) == 1
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        CowScheduler(interval=-1)
    with pytest.raises(ValueError, match="budget"):
        CowScheduler(budget=0)


def test_threaded_scans_land_at_a_later_tick_and_are_charged(
    tree: tuple[TickContext, int],
) -> None:
    ctx, child = tree
    clock = Clock()
    scanner = Scanner(clock)
    sched = CowScheduler(clock=clock, scanner=scanner)  # threaded (the default)
    try:
        sched(ctx)  # submits the baseline scan to the scan thread
        assert sched.copied == {}
        for _ in range(200):
            if scanner.calls:
                break
            time.sleep(0.01)
        time.sleep(0.05)
        ctx.own_budget_cpu = 0.0
        sched(ctx)  # collects it, writes it, charges the thread's CPU to its own budget
    finally:
        sched.close()
    assert scanner.calls == [(child, os.getpid())]
    assert sched.copied == {ctx.members[1].key: 0}
    assert sched.scans == 1
    assert ctx.own_budget_cpu >= 0.0
    assert sched.tokens <= sched.burst


def test_one_scan_at_a_time_goes_round_robin(tmp_path: Path) -> None:
    # GIVEN three workers due every second and room for one scan per tick
    children = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    writer = RecordingWriter(str(tmp_path / "rr.memscope"), {})
    try:
        me = os.getpid()
        members = []
        for pid, ppid in [(me, os.getppid())] + [(c.pid, me) for c in children]:
            m = Member(pid=pid, start_ticks=ProcFS().stat(pid).start_ticks, ppid=ppid,
                       role="worker", parent_key=None)
            m.record_id = writer.add_process(pid=pid, start_ticks=m.start_ticks, ppid=ppid,
                                             parent_id=None, role="worker", cmdline=[],
                                             exe=None, python_version=None, started_at=0.0)
            members.append(m)
        ctx = TickContext(0.0, members, members[0], writer, ProcFS(), {})
        clock = Clock()
        scanner = Scanner(clock)

        def slow_scan(pid: int, ppid: int, procfs: ProcFS) -> CowScan:
            time.sleep(0.02)
            return scanner(pid, ppid, procfs)

        sched = CowScheduler(interval=1.0, clock=clock, scanner=slow_scan, threaded=False,
                             tick_slice=0.01)
        for _ in range(9):
            sched(ctx)
            clock.now += 1.0
        # THEN every worker got its turn three times, not the first one nine times
        scanned = [pid for pid, _ in scanner.calls]
        assert sorted(scanned) == sorted([c.pid for c in children] * 3)
    finally:
        for c in children:
            c.kill()
            c.wait()
        writer.close()
