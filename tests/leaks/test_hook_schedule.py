"""LeakHook scheduling. Each job kind runs on its own thread, so neither waits for the other:
- a worker's COW sites job starts even while a leak snapshot runs. The worker (and its parent
  right after it) may exit at any moment: a parent's leak job picked first once delayed a
  second worker's sites until its parent had exited, and that worker got no `cow_sites`
  (test_run_trace_sites);
- leak snapshots go on while a worker keeps copying. A leaking worker's Private_Dirty moves
  all the time, which keeps its sites due: with one shared job thread the sites jobs took every
  turn, and a loaded 9 s `--trace-workers` run took no leak snapshot at all
  (test_leaky_worker::test_traced_workers_name_the_leaking_line)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from memscope.leaks.hook import DIRTY_STEP, LeakConfig, LeakHook, _Due
from memscope.tree import Member


class RecordingHook(LeakHook):
    """Records which job each tick starts instead of running it (no agent, no /proc). The
    test sets and clears the per-kind busy flags itself, as running jobs would."""

    def __init__(self, config: LeakConfig) -> None:
        super().__init__(config, clock=lambda: 1000.0)
        self.started: list[tuple[str, int]] = []

    def _drain(self, ctx: Any) -> None:
        pass  # nothing is written: no recording here

    def _capture(self, m: Member, t: float) -> None:
        self._pages[m.key] = None  # type: ignore[assignment]  # read (the capture thread)

    def _start(self, kind: str, m: Member, t: float, due: _Due) -> None:
        self.started.append((kind, m.pid))
        due.next_at = float("inf")  # once is enough for these tests


def tick(hook: RecordingHook, members: list[Member], dirty: dict[int, int]) -> None:
    latest = {m.record_id: SimpleNamespace(private_dirty=dirty[m.pid]) for m in members
              if m.pid in dirty}
    ctx: Any = SimpleNamespace(t=0.0, members=members, root=members[0], writer=None,
                               procfs=None, latest=latest, want_rollup=set(), copied={},
                               copied_pages={})
    hook.tick(ctx)


def tree(tmp_path: Path, workers: int) -> list[Member]:
    root = Member(pid=100, start_ticks=1, ppid=1, role="root", parent_key=None, record_id=0)
    out = [root]
    for i in range(1, workers + 1):
        out.append(Member(pid=100 + i, start_ticks=1 + i, ppid=100, role="worker",
                          parent_key=root.key, record_id=i))
        (tmp_path / f"agent-{100 + i}.sock").touch()  # the worker's agent is listening
    return out


def test_sites_job_starts_while_the_parents_leak_job_runs(tmp_path: Path) -> None:
    root, worker = members = tree(tmp_path, 1)
    hook = RecordingHook(LeakConfig(run_dir=str(tmp_path)))
    hook._leak[root.key] = _Due(next_at=0.0)  # due at once
    hook._leak[worker.key] = _Due(next_at=float("inf"))
    tick(hook, members, {101: 0})  # first sight: nothing copied yet
    assert hook.started == [("leak", 100)]
    hook._busy["leak"].set()  # the parent's leak snapshot is still running
    tick(hook, members, {101: 8 * DIRTY_STEP})  # copying
    assert hook.started == [("leak", 100)]
    tick(hook, members, {101: 8 * DIRTY_STEP})  # settled: the sites are due
    assert hook.started == [("leak", 100), ("sites", 101)]


def test_a_worker_settled_during_a_sites_job_is_next(tmp_path: Path) -> None:
    """Whether a worker still copies is judged tick to tick even while another sites job
    runs: one that settled meanwhile is the next sites job."""
    members = tree(tmp_path, 2)
    hook = RecordingHook(LeakConfig(run_dir=str(tmp_path)))
    for m in members:
        hook._leak[m.key] = _Due(next_at=float("inf"))
    tick(hook, members, {101: 0, 102: 0})
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 0})
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 0})  # w1 settled: its job starts
    assert hook.started == [("sites", 101)]
    hook._busy["sites"].set()  # w1's job is still running while w2 copies and settles
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 4 * DIRTY_STEP})
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 8 * DIRTY_STEP})
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 8 * DIRTY_STEP})
    assert hook.started == [("sites", 101)]
    hook._busy["sites"].clear()  # w1's job ended
    if hook._capturer is not None:  # w2's pages were read meanwhile (the capture thread)
        hook._capturer.join(30.0)
    tick(hook, members, {101: 8 * DIRTY_STEP, 102: 8 * DIRTY_STEP})
    assert hook.started == [("sites", 101), ("sites", 102)]


def test_leak_snapshots_go_on_while_sites_jobs_keep_running(tmp_path: Path) -> None:
    """A worker that keeps copying keeps the sites thread busy; every process's due leak
    snapshot still starts, the longest overdue first."""
    root, w1, w2 = members = tree(tmp_path, 2)
    hook = RecordingHook(LeakConfig(run_dir=str(tmp_path)))
    hook._leak[root.key] = _Due(next_at=999.0)
    hook._leak[w1.key] = _Due(next_at=990.0)  # overdue the longest
    hook._leak[w2.key] = _Due(next_at=995.0)
    hook._busy["sites"].set()  # a sites job runs for the whole test
    dirty = 0
    for _ in range(3):
        dirty += 8 * DIRTY_STEP  # w1 keeps copying: its sites stay due
        tick(hook, members, {101: dirty, 102: 0})
    assert hook.started == [("leak", 101), ("leak", 102), ("leak", 100)]


def test_a_worker_that_keeps_copying_is_rescanned_at_its_jobs_pace(tmp_path: Path) -> None:
    """A settled worker gets its first sites job at once; later ones wait for what the last
    job cost (its wall time over the budget): resolving a leaking worker's blocks back to back
    through its own agent starved its main thread of a quarter of its requests."""
    now = [1000.0]
    hook = RecordingHook(LeakConfig(run_dir=str(tmp_path), budget=0.05))
    hook.clock = lambda: now[0]
    _, w1 = members = tree(tmp_path, 1)
    for m in members:
        hook._leak[m.key] = _Due(next_at=float("inf"))
    dirty = 0
    tick(hook, members, {101: dirty})
    for step in range(1, 40):  # one tick per second; 8 MiB copied between two ticks ...
        now[0] += 1.0
        dirty += 8 * DIRTY_STEP if step % 2 else 0  # ... then a settled tick
        before = len(hook.started)
        tick(hook, members, {101: dirty})
        if len(hook.started) > before:  # the job ran at once and took 1 s
            due = hook._sites[w1.key]
            due.last_at, due.pace, due.next_at = now[0], 1.0 / 0.05, now[0] + 20.0
    assert hook.started == [("sites", 101), ("sites", 101)]


def test_only_run_holds_a_tracing_origin_at_its_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` asks the origin's agent to wait at exit for its workers' sites; `attach` never
    does (a production master's shutdown is not delayed)."""
    import memscope.cow.sites as sites_mod

    asked: list[tuple[int, float]] = []
    monkeypatch.setattr(sites_mod, "hold_origin",
                        lambda run_dir, origin, seconds: asked.append((origin, seconds)))
    _, worker = tree(tmp_path, 1)
    for hold_exit, expected in ((False, []), (True, [(100, 5.0)])):
        asked.clear()
        hook = LeakHook(LeakConfig(run_dir=str(tmp_path), hold_exit=hold_exit))
        hook._origins[(100, -1)] = 100  # the worker's parent traces: it is the origin
        hook._hold(worker, 5.0)
        assert asked == expected
