"""When the COW scheduler scans: baseline, growth then settling, never idle workers, fixed
interval, budget, on demand, and at the end of a recording (nothing in flight is lost).

The clock is injected and the scanner records its calls, so the schedule is tested alone;
the processes are real (this test process and a `sleep` child); the Private_Dirty readings the
estimate follows are given as rollups, as the sampler would hand them over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memscope.budget import CpuBudget
from memscope.cow._model import CowScan
from memscope.cow.scan import QUICK_TARGET
from memscope.cow.schedule import CowScheduler, install_sigusr1
from memscope.cow.store import read_scans
from memscope.procfs import ProcFS, Rollup
from memscope.recording import RecordingWriter, open_recording
from memscope.sampler import Session, TickContext
from memscope.tree import Member, ProcessTree


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


MiB = 1 << 20


def dirty(ctx: TickContext, nbytes: int, t: float) -> None:
    """A new rollup of the worker with this Private_Dirty, taken at tick time t."""
    ctx.t = t
    ctx.latest[ctx.members[1].record_id] = Rollup(private_dirty=nbytes)
    FAULTS[ctx.members[1].pid] = nbytes // 4096  # each new dirty page was one minor fault


FAULTS: dict[int, int] = {}


def faults(_procfs: ProcFS, pid: int) -> int | None:
    return FAULTS.get(pid, 0)


def test_baseline_then_idle_workers_are_never_rescanned(tree: tuple[TickContext, int]) -> None:
    ctx, child = tree
    clock = Clock()
    scanner = Scanner(clock)
    sched = CowScheduler(clock=clock, scanner=scanner, threaded=False, faults=faults)
    dirty(ctx, 4 * MiB, 0.0)
    sched(ctx)  # GIVEN a new worker: its baseline scan, against its parent
    assert scanner.calls == [(child, os.getpid())]
    assert sched.copied == {ctx.members[1].key: 0}
    for minute in range(1, 4):  # WHEN its memory does not move for three minutes
        clock.now += 60
        dirty(ctx, 4 * MiB, 60.0 * minute)
        sched(ctx)
    assert len(scanner.calls) == 1  # THEN it is not rescanned
    ctx.writer.flush()  # committed before a reader opens it (readers read a snapshot)
    rec = open_recording(ctx.writer.path)
    # the baseline was a quick page-level scan at first sight, then the full one; nothing else
    scans = read_scans(rec.conn)[ctx.members[1].record_id]
    assert [s.pid for s in scans] == [child, child]
    assert sorted(s.target == QUICK_TARGET for s in scans) == [False, True]
    rec.close()


def test_copying_worker_is_rescanned_once_it_settles(tree: tuple[TickContext, int]) -> None:
    ctx, _child = tree
    clock = Clock()
    scanner = Scanner(clock)
    sched = CowScheduler(clock=clock, scanner=scanner, quick=None, threaded=False,
                         faults=faults)
    dirty(ctx, 1 * MiB, 0.0)
    sched(ctx)
    assert len(scanner.calls) == 1  # baseline
    # WHEN it copies 60 MiB over 1.2 s (Private_Dirty +10 MiB per 0.2 s tick)
    for step in range(1, 7):
        clock.now += 0.2
        dirty(ctx, (1 + 10 * step) * MiB, 0.2 * step)
        sched(ctx)
    # THEN no scan is wasted on a half-copied state
    assert len(scanner.calls) == 1
    assert sched.estimates.copying(ctx.members[1].key)
    # WHEN its Private_Dirty stops moving for longer than the settle time
    for step in range(7, 10):
        clock.now += 0.2
        dirty(ctx, 61 * MiB, 0.2 * step)
        sched(ctx)
    # THEN it is rescanned exactly once, and the scan is not marked as taken mid-copy
    assert len(scanner.calls) == 2
    ctx.writer.flush()  # committed before a reader opens it (readers read a snapshot)
    rec = open_recording(ctx.writer.path)
    scans = read_scans(rec.conn)[ctx.members[1].record_id]
    assert [s.copying for s in scans] == [False, False]
    # AND the per-tick estimate was recorded between the scans: 60 MiB of growth
    estimates = [b for _, b in rec.conn.execute("SELECT t, copied_bytes FROM cow_estimates")]
    assert max(estimates) == 60 * MiB
    rec.close()


def test_a_worker_copying_for_long_is_scanned_and_marked(tree: tuple[TickContext, int]) -> None:
    ctx, _child = tree
    clock = Clock()
    scanner = Scanner(clock)
    sched = CowScheduler(clock=clock, scanner=scanner, threaded=False, copying_gap=10.0,
                         faults=faults, quick=None)
    dirty(ctx, 0, 0.0)
    sched(ctx)
    for step in range(1, 60):  # copying 5 MiB/s without a pause for 12 s
        clock.now += 0.2
        dirty(ctx, step * MiB, 0.2 * step)
        sched(ctx)
    assert len(scanner.calls) == 2  # the baseline, then one after copying_gap
    ctx.writer.flush()
    rec = open_recording(ctx.writer.path)
    assert [s.copying for s in read_scans(rec.conn)[ctx.members[1].record_id]] == [False, True]
    rec.close()


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
    sched = CowScheduler(clock=clock, scanner=scanner, threaded=False, faults=faults)
    cpu = [0.0]
    ctx.budget = CpuBudget(0.05, allowance=0.0, clock=clock, cpu_clock=lambda: cpu[0])
    cpu[0] = 0.5  # GIVEN the process just spent 0.5 CPU-s (e.g. a scan): the bucket is in debt
    ctx.budget.settle()
    sched(ctx)
    assert scanner.calls == []
    clock.now += 12.0  # refills 0.6 CPU-s at 5 %: above zero again
    ctx.budget.settle()
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


def test_a_request_during_a_scan_gets_a_scan_started_after_it(
    tree: tuple[TickContext, int],
) -> None:
    """SIGUSR1 means "a scan from now": a worker whose scan was already running when the
    request came (it may have started before the copying the user wants seen) is scanned again
    once that scan ends, not skipped."""
    ctx, _child = tree
    clock = Clock()
    started = threading.Event()
    release = threading.Event()
    calls: list[float] = []

    def slow(pid: int, ppid: int, procfs: ProcFS) -> CowScan:
        calls.append(clock())
        started.set()
        if len(calls) == 1:
            release.wait(30)
        return Scanner(clock)(pid, ppid, procfs)

    sched = CowScheduler(clock=clock, scanner=slow, quick=None, interval=0)
    try:
        sched.request()
        sched(ctx)  # GIVEN the first requested scan, still running
        assert started.wait(30)
        clock.now += 5.0
        sched.request()  # WHEN a second request comes while it runs
        sched(ctx)
        assert calls == [1000.0]
        release.set()
        deadline = time.monotonic() + 30
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
            sched(ctx)  # collects the first scan; the owed one starts
    finally:
        release.set()
        sched.close(ctx.writer)
    # THEN a second scan ran, started after the second request
    assert calls == [1000.0, 1005.0]
    assert sched.scans == 2


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        CowScheduler(interval=-1)
    with pytest.raises(ValueError, match="budget"):
        CpuBudget(0)


def test_threaded_scans_land_at_a_later_tick(tree: tuple[TickContext, int]) -> None:
    ctx, child = tree
    clock = Clock()
    scanner = Scanner(clock)
    sched = CowScheduler(clock=clock, scanner=scanner, quick=None)  # threaded (default)
    try:
        sched(ctx)  # submits the baseline scan to the scan thread
        assert sched.copied == {}
        deadline = time.monotonic() + 30
        while sched.scans == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
            sched(ctx)  # collects it when done, and writes it
    finally:
        sched.close(ctx.writer)
    assert scanner.calls == [(child, os.getpid())]
    assert sched.copied == {ctx.members[1].key: 0}
    assert sched.scans == 1


def test_close_writes_the_scan_in_flight_and_final_scans(tmp_path: Path) -> None:
    # GIVEN a worker whose scan is still running when the recording ends
    child = subprocess.Popen(["sleep", "60"])
    writer = RecordingWriter(str(tmp_path / "end.memscope"), {})
    procfs = ProcFS()
    tree = ProcessTree(procfs, os.getpid())
    try:
        deadline = time.monotonic() + 30
        while child.pid not in tree.members and time.monotonic() < deadline:
            tree.refresh()
        for m in list(tree.members.values()):  # other tests' children of this process: not ours
            if m.pid not in (os.getpid(), child.pid):
                tree.remove(m)
        for m in tree.members.values():
            m.record_id = writer.add_process(pid=m.pid, start_ticks=m.start_ticks, ppid=m.ppid,
                                             parent_id=None, role=m.role, cmdline=[], exe=None,
                                             python_version=None, started_at=0.0)
        members = list(tree.members.values())
        ctx = TickContext(0.0, members, tree.root, writer, procfs, {})
        clock = Clock()
        started = threading.Event()
        release = threading.Event()
        calls: list[int] = []

        def slow(pid: int, ppid: int, procfs: ProcFS) -> CowScan:
            calls.append(pid)
            started.set()
            release.wait(30)
            return Scanner(clock)(pid, ppid, procfs)

        sched = CowScheduler(clock=clock, scanner=slow, quick=None)
        sched.start(Session(writer, procfs, tree, ctx.budget))
        worker = tree.members[child.pid]
        ctx.latest[worker.record_id] = Rollup(private_dirty=0)
        sched(ctx)
        assert started.wait(30)
        # AND its memory moved by 8 MiB while the scan ran
        ctx.latest[worker.record_id] = Rollup(private_dirty=8 * MiB)
        ctx.t = 1.0
        sched(ctx)
        # WHEN the recording ends while the scan is still in flight
        threading.Timer(0.3, release.set).start()
        sched.close(writer)
        writer.flush()
        # THEN the scan in flight is written, and the live worker got a final scan after it
        rec = open_recording(writer.path)
        assert [s.pid for s in read_scans(rec.conn)[worker.record_id]] == [child.pid] * 2
        assert calls == [child.pid, child.pid]
        rec.close()
    finally:
        child.kill()
        child.wait()
        writer.close()


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


def test_final_scans_skip_a_quick_scan_whose_copied_bytes_still_hold(tmp_path: Path) -> None:
    # GIVEN a worker quick-scanned at first sight whose full scan the budget has not allowed
    child = subprocess.Popen(["sleep", "60"])
    writer = RecordingWriter(str(tmp_path / "q.memscope"), {})
    procfs = ProcFS()
    tree = ProcessTree(procfs, os.getpid())
    try:
        deadline = time.monotonic() + 30
        while child.pid not in tree.members and time.monotonic() < deadline:
            tree.refresh()
        for m in list(tree.members.values()):  # other tests' children of this process: not ours
            if m.pid not in (os.getpid(), child.pid):
                tree.remove(m)
        for m in tree.members.values():
            m.record_id = writer.add_process(pid=m.pid, start_ticks=m.start_ticks, ppid=m.ppid,
                                             parent_id=None, role=m.role, cmdline=[], exe=None,
                                             python_version=None, started_at=0.0)
        members = list(tree.members.values())
        ctx = TickContext(0.0, members, tree.root, writer, procfs, {},
                          budget=CpuBudget(0.05, allowance=-1.0))
        clock = Clock()
        quick, full = Scanner(clock), Scanner(clock)
        sched = CowScheduler(clock=clock, scanner=full, quick=quick, threaded=False,
                             faults=faults)
        sched.start(Session(writer, procfs, tree, ctx.budget))
        worker = tree.members[child.pid]
        ctx.latest[worker.record_id] = Rollup(private_dirty=0)
        sched(ctx)
        assert quick.calls == [(child.pid, os.getpid())] and full.calls == []
        # WHEN the recording ends with nothing moved since
        sched.close(writer)
        # THEN the final scans owe it only its full scan (types): no second quick scan
        assert quick.calls == [(child.pid, os.getpid())]
        assert full.calls == [(child.pid, os.getpid())]
    finally:
        child.kill()
        child.wait()
        writer.close()


def test_a_sample_of_a_quick_scans_copied_pages_is_handed_on_when_asked(
    tree: tuple[TickContext, int],
) -> None:
    # GIVEN a quick scan that found 10,000 copied pages, and a scheduler asked to keep ~500
    ctx, _child = tree
    clock = Clock()
    addrs = (np.arange(10_000, dtype=np.uint64) + 0x7F0000000) * 4096

    def quick(pid: int, ppid: int, procfs: ProcFS) -> CowScan:
        scan = Scanner(clock)(pid, ppid, procfs)
        scan.copied_pages = addrs
        return scan

    sched = CowScheduler(clock=clock, scanner=Scanner(clock), quick=quick, threaded=False,
                         faults=faults, keep_pages=500)
    dirty(ctx, 4 * MiB, 0.0)
    sched(ctx)
    # WHEN the next tick runs
    ctx.copied_pages.clear()
    sched(ctx)
    # THEN the hooks after it see the worker's sample: about 500 of the pages, at their rate
    sample, rate = ctx.copied_pages[ctx.members[1].record_id]
    assert 300 <= len(sample) <= 700 and set(sample.tolist()) <= set(addrs.tolist())
    assert rate == pytest.approx(len(sample) / len(addrs))
    # AND without keep_pages nothing is kept
    plain = CowScheduler(clock=clock, scanner=Scanner(clock), quick=quick, threaded=False,
                         faults=faults)
    ctx.copied_pages.clear()
    plain(ctx)
    plain(ctx)
    assert ctx.copied_pages == {} and plain.pages == {}
