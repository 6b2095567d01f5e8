"""LeakHook scheduling: a worker's COW sites job goes before any leak snapshot. The worker (and
its parent right after it) may exit at any moment, while a leak snapshot can wait: a parent's
leak job picked first once delayed a second worker's sites until its parent had exited, and
that worker got no `cow_sites` at all (test_run_trace_sites)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from memscope.leaks.hook import DIRTY_STEP, LeakConfig, LeakHook, _Due
from memscope.tree import Member


class RecordingHook(LeakHook):
    """Records which job each tick starts instead of running it (no agent, no /proc)."""

    def __init__(self, config: LeakConfig) -> None:
        super().__init__(config, clock=lambda: 1000.0)
        self.started: list[tuple[str, int]] = []
        self.ran = threading.Event()

    def _drain(self, ctx: Any) -> None:
        pass  # nothing is written: no recording here

    def _capture(self, m: Member, t: float) -> None:
        self._pages[m.key] = None  # type: ignore[assignment]  # read (the capture thread)

    def _run(self, kind: str, m: Member, t: float, due: _Due) -> None:
        self.started.append((kind, m.pid))
        due.next_at = float("inf")  # once is enough for this test
        self._busy.clear()
        self.ran.set()


def tick(hook: RecordingHook, members: list[Member], dirty: dict[int, int]) -> None:
    hook.ran.clear()
    latest = {m.record_id: SimpleNamespace(private_dirty=dirty[m.pid]) for m in members
              if m.pid in dirty}
    ctx: Any = SimpleNamespace(t=0.0, members=members, root=members[0], writer=None,
                               procfs=None, latest=latest, want_rollup=set())
    was_busy, before = hook._busy.is_set(), len(hook.started)
    hook.tick(ctx)
    if was_busy or (not hook._busy.is_set() and len(hook.started) == before):
        return  # no job could start, or none was due
    assert hook.ran.wait(30.0)


def test_sites_job_goes_before_the_parents_leak_job(tmp_path: Path) -> None:
    root = Member(pid=100, start_ticks=1, ppid=1, role="root", parent_key=None, record_id=0)
    worker = Member(pid=101, start_ticks=2, ppid=100, role="worker", parent_key=root.key,
                    record_id=1)
    (tmp_path / "agent-101.sock").touch()  # the worker's agent is listening
    hook = RecordingHook(LeakConfig(run_dir=str(tmp_path)))
    hook._leak[root.key] = _Due(next_at=float("inf"))  # not due while the worker copies
    hook._leak[worker.key] = _Due(next_at=float("inf"))
    tick(hook, [root, worker], {101: 0})  # first sight: nothing copied yet
    tick(hook, [root, worker], {101: 8 * DIRTY_STEP})  # copying
    assert hook.started == []
    hook._leak[root.key].next_at = 0.0  # now the parent's leak snapshot is due as well
    tick(hook, [root, worker], {101: 8 * DIRTY_STEP})  # settled: the sites are due
    assert hook.started == [("sites", 101)]
    tick(hook, [root, worker], {101: 8 * DIRTY_STEP})
    assert hook.started == [("sites", 101), ("leak", 100)]


def test_a_worker_settled_during_a_job_is_next(tmp_path: Path) -> None:
    """Whether a worker still copies is judged tick to tick even while another job runs: one
    that settled meanwhile is the next job, before its parent's due leak snapshot."""
    root = Member(pid=100, start_ticks=1, ppid=1, role="root", parent_key=None, record_id=0)
    w1, w2 = (Member(pid=p, start_ticks=p, ppid=100, role="worker", parent_key=root.key,
                     record_id=p - 100) for p in (101, 102))
    for w in (w1, w2):
        (tmp_path / f"agent-{w.pid}.sock").touch()
    hook = RecordingHook(LeakConfig(run_dir=str(tmp_path)))
    for m in (root, w1, w2):
        hook._leak[m.key] = _Due(next_at=float("inf"))
    members = [root, w1, w2]
    tick(hook, members, {101: 0, 102: 0})
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 0})
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 0})  # w1 settled: its job starts
    assert hook.started == [("sites", 101)]
    hook._busy.set()  # w1's job is still running while w2 copies and settles
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 4 * DIRTY_STEP})
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 8 * DIRTY_STEP})
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 8 * DIRTY_STEP})
    assert hook.started == [("sites", 101)]
    hook._leak[root.key].next_at = 0.0
    hook._busy.clear()  # w1's job ended
    if hook._capturer is not None:  # w2's pages were read meanwhile (the capture thread)
        hook._capturer.join(30.0)
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 8 * DIRTY_STEP})
    assert hook.started == [("sites", 101), ("sites", 102)]
