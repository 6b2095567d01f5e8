"""The sampler over a captured /proc: what one tick writes, the budget, PID reuse."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator

import pytest

from memscope.budget import CpuBudget
from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter, open_recording
from memscope.sampler import Sampler, TickContext, on_tick
from memscope.tree import ProcessTree
from tests.conftest import CAPTURED_PROC

PARENT, CHILD, HOSTILE, GRANDCHILD = 14337, 14339, 14340, 14341


class FakeClock:
    def __init__(self, step: float) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        return self.now

    def advance(self) -> None:
        self.now += self.step


@pytest.fixture
def proc_root(tmp_path: os.PathLike[str]) -> Iterator[str]:
    root = os.path.join(str(tmp_path), "proc")
    shutil.copytree(CAPTURED_PROC, root, symlinks=True)
    yield root


def make_sampler(root: str, path: str, clock: FakeClock, cpu_step: float, **kw: object) -> Sampler:
    procfs = ProcFS(root)
    cpu = itertools.count(0.0, cpu_step)
    writer = RecordingWriter(path, {"mode": "test"})
    fake_cpu = lambda: next(cpu)  # noqa: E731
    # The budget is charged from the same fake CPU clock, without a startup allowance.
    share = float(kw.pop("budget", 0.05))  # type: ignore[arg-type]
    allowance = float(kw.pop("allowance", 0.0))  # type: ignore[arg-type]
    budget = CpuBudget(share, allowance=allowance, clock=clock, cpu_clock=fake_cpu)
    return Sampler(procfs, ProcessTree(procfs, PARENT), writer, clock=clock,
                   cpu_clock=fake_cpu, budget=budget, **kw)  # type: ignore[arg-type]


def run_ticks(sampler: Sampler, clock: FakeClock, n: int) -> None:
    """`n` ticks, the clock advancing one step after each."""
    for _ in range(n):
        sampler.tick()
        clock.advance()


def test_first_tick_records_tree_with_full_samples(proc_root: str, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    seen: list[TickContext] = []
    sampler = make_sampler(proc_root, path, FakeClock(0.2), 0.0, hooks=[on_tick(seen.append)])
    sampler.tick()
    sampler.writer.close()
    rec = open_recording(path)
    roles = {p.pid: p.role for p in rec.processes}
    assert roles == {PARENT: "root", CHILD: "worker", HOSTILE: "worker", GRANDCHILD: "descendant"}
    by_pid = {p.pid: p for p in rec.processes}
    assert by_pid[HOSTILE].cmdline == ["/tmp/x) (y z", "30"]
    assert by_pid[GRANDCHILD].parent_id == by_pid[CHILD].id
    assert by_pid[PARENT].python_version == "3.11.7"
    samples = {s.process_id: s for s in rec.samples()}
    root = samples[by_pid[PARENT].id]
    # births always get a full rollup: the captured smaps_rollup numbers
    assert root["rss"] == 17408 * 1024
    assert root["pss"] == 5476 * 1024
    assert root["uss"] == 768 * 1024
    assert root["rss_shared"] == 1655 * 4096  # statm's file+shmem pages
    assert len(seen) == 1 and {m.pid for m in seen[0].members} == set(roles)


def test_budget_rations_rollups_but_counters_every_tick(
    proc_root: str, tmp_path: os.PathLike[str]
) -> None:
    # GIVEN each CPU-clock read advancing 1 ms, and a budget of 1 % of a core at 0.2 s ticks
    path = os.path.join(str(tmp_path), "r.memscope")
    clock = FakeClock(0.2)
    sampler = make_sampler(proc_root, path, clock, 0.001, budget=0.01)
    run_ticks(sampler, clock, 20)
    sampler.writer.close()
    rec = open_recording(path)
    rows = list(rec.samples())
    full = [r for r in rows if r["pss"] is not None]
    # THEN every process has a counter sample on every tick
    assert len(rows) == 4 * 20
    # AND full rollups beyond the 4 births are rationed to the budget: 2 ms per tick
    # cannot pay for a ~2 ms rollup every tick for 4 processes
    assert 4 <= len(full) < 4 * 20 / 2
    assert all(r["rss"] for r in rows)


def test_pid_reuse_between_ticks_is_a_death(proc_root: str, tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "r.memscope")
    clock = FakeClock(0.2)
    sampler = make_sampler(proc_root, path, clock, 0.0)
    sampler.tick()
    # WHEN the hostile worker exits and an unrelated process gets its PID before the next tick
    pid_dir = os.path.join(proc_root, str(HOSTILE))
    with open(os.path.join(pid_dir, "stat"), "rb") as fh:
        raw = fh.read()
    shutil.rmtree(pid_dir)
    shutil.copytree(os.path.join(CAPTURED_PROC, "1"), pid_dir)
    head, _, rest = raw.rpartition(b")")
    fields = rest.split()
    fields[1] = b"1"
    fields[19] = str(int(fields[19]) + 500).encode()
    with open(os.path.join(pid_dir, "stat"), "wb") as fh:
        fh.write(head + b") " + b" ".join(fields))
    clock.advance()
    sampler.tick()
    clock.advance()
    sampler.tick()
    sampler.writer.close()
    rec = open_recording(path)
    hostile = [p for p in rec.processes if p.pid == HOSTILE]
    # THEN the old process is marked exited and the newcomer is not adopted into the tree
    assert len(hostile) == 1
    assert hostile[0].exited_at == pytest.approx(1000.2)
    assert HOSTILE not in sampler.tree.members
    later = [s for s in rec.samples(hostile[0].id) if s.t > 1000.0]
    assert later == []


def test_a_quiet_process_is_rolled_up_less_and_less_often(
    proc_root: str, tmp_path: os.PathLike[str]
) -> None:
    # GIVEN a short budget (its bucket far from full) that could still pay for a rollup of
    # every process on every tick, and a captured /proc that stands still
    path = os.path.join(str(tmp_path), "r.memscope")
    clock = FakeClock(0.2)
    sampler = make_sampler(proc_root, path, clock, 0.0, budget=0.01, quiet_gap=1.0)
    run_ticks(sampler, clock, 21)  # 4 s
    child = sampler.tree.members[CHILD].record_id
    # WHEN the child's resident set (statm) changes
    statm = os.path.join(proc_root, str(CHILD), "statm")
    with open(statm) as fh:
        fields = fh.read().split()
    fields[1] = str(int(fields[1]) + 256)
    with open(statm, "w") as fh:
        fh.write(" ".join(fields) + "\n")
    sampler.tick()
    sampler.writer.close()
    rec = open_recording(path)
    full = [r for r in rec.samples() if r["pss"] is not None]
    # THEN while nothing moved, each process got its birth rollup, one after the quiet gap
    # (1 s), and then one after twice that: each rollup that finds nothing changed doubles
    # the gap (not one rollup per tick: 21)
    for pid in (PARENT, CHILD, HOSTILE, GRANDCHILD):
        rid = sampler.tree.members[pid].record_id
        times = sorted(r.t for r in full if r.process_id == rid and r.t < clock.now)
        gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
        assert gaps == [1.0, 2.0], (pid, times)
    # AND the tick that saw the child's statm move rolled it up at once, less than a gap
    # after its previous rollup
    child_rollups = sorted(r.t for r in full if r.process_id == child)
    assert child_rollups[-1] == pytest.approx(clock.now)
    assert clock.now - child_rollups[-2] < 2.0


def test_run_stretches_ticks_whose_fixed_cost_exceeds_half_the_budget(
    proc_root: str, tmp_path: os.PathLike[str]
) -> None:
    # GIVEN every CPU-clock read advancing 1 ms and a budget of 0.1 % of a core: a tick's
    # fixed cost (a few reads) alone is far more than half the budget at 0.2 s ticks
    path = os.path.join(str(tmp_path), "r.memscope")
    clock = FakeClock(0.2)
    sampler = make_sampler(proc_root, path, clock, 0.001, budget=0.001)
    slept: list[float] = []
    ticks = iter(range(10))
    sampler.run(0.2, lambda: next(ticks, None) is None, sleep=slept.append)
    sampler.flush()
    sampler.writer.close()
    # THEN run() waits base_cost / (half the budget) between ticks, not 0.2 s
    assert sampler.base_cost >= 0.001
    step = sampler.base_cost / (0.001 * 0.5)
    # (sleep is a recorder: the real clock stands still, so each delay adds one step)
    steps = [slept[0], *(b - a for a, b in itertools.pairwise(slept))]
    # (the first ticks, before the fixed cost can be judged, keep the interval)
    assert len(steps) == 10 and steps[-1] == pytest.approx(step, rel=0.5)
    assert min(steps[5:]) > 0.2 * 5
    # AND the recording says so
    rec = open_recording(path)
    assert rec.meta["sampler_stretched_to_s"] >= step * 0.5


def test_a_full_budget_keeps_rolling_up_quiet_processes(
    proc_root: str, tmp_path: os.PathLike[str]
) -> None:
    # GIVEN a budget whose bucket is full (a small tree), and a /proc that stands still
    path = os.path.join(str(tmp_path), "r.memscope")
    clock = FakeClock(0.2)
    sampler = make_sampler(proc_root, path, clock, 0.0, budget=0.05, allowance=1.0)
    run_ticks(sampler, clock, 10)
    sampler.writer.close()
    # THEN every process got a full rollup on every tick: fresh figures cost nothing scarce
    full = [r for r in open_recording(path).samples() if r["pss"] is not None]
    assert len(full) == 4 * 10
