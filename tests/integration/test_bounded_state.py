"""What a recording keeps per process stays bounded by the live tree, however many processes
come and go (days of recycled workers must not grow memscope).

The real code path: the kernel's process events (as root), the tree, the sampler and every
feature hook a recording can have (COW scans, libraries, leak census, metrics feed, live
view), on fixtures/churn_master.py recycling its workers after 0.5-1.5 s, so both lasting
workers and short-lived ones (< roles.LASTING_S) keep being born and ending.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from rich.console import Console

from memscope.cow.schedule import CowScheduler
from memscope.follow import Birth
from memscope.leaks.hook import LeakConfig, LeakHook
from memscope.libraries import LibraryWatch
from memscope.live import LiveView
from memscope.metrics.feed import MetricsFeed
from memscope.metrics.snapshot import SnapshotBox
from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter
from memscope.sampler import Sampler
from memscope.session import follow_births
from memscope.tree import ProcessTree
from tests.conftest import fixture

BIRTHS = 80  # processes born and ended under the recording (20x the live workers)


@pytest.fixture
def churn() -> Iterator[subprocess.Popen[str]]:
    """4 workers, each recycled after 10-30 requests at 20/s (0.5-1.5 s lives)."""
    proc = subprocess.Popen([sys.executable, fixture("churn_master"), "--workers", "4",
                             "--size", "50000", "--rate", "20", "--max-requests", "10",
                             "--max-requests-jitter", "20"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "preloaded"
    yield proc
    proc.terminate()
    proc.wait(30)


def kept_per_process(sampler: Sampler, hooks: dict[str, object]) -> dict[str, int]:
    """Entries of every per-process structure of the recording process."""
    tree, book = sampler.tree, sampler.tree.roles
    cow = hooks["cow"]
    leaks = hooks["leaks"]
    feed = hooks["metrics"]
    live = hooks["live"]
    libraries = hooks["libraries"]
    assert isinstance(libraries, LibraryWatch)
    assert isinstance(cow, CowScheduler) and isinstance(leaks, LeakHook)
    assert isinstance(feed, MetricsFeed) and isinstance(live, LiveView)
    counts = {
        "sampler._state": len(sampler._state),
        "sampler.latest": len(sampler.latest),
        "tree._departed": len(tree._departed),
        "roles.nodes": len(book.nodes),
        "roles._children": sum(len(v) for v in book._children.values()),
        "roles._ended": len(book._ended),
        "cow._last_t": len(cow._last_t),
        "cow.copied": len(cow.copied),
        "cow._want_full": len(cow._want_full),
        "cow._quicked": len(cow._quicked),
        "cow.errors": len(cow.errors),
        "cow.estimates": len(cow.estimates._w),
        "leaks._leak": len(leaks._leak),
        "leaks._sites": len(leaks._sites),
        "leaks._origins": len(leaks._origins),
        "leaks._parent_targets": len(leaks._parent_targets),
        "leaks.errors": len(leaks.errors),
        "metrics._sampled": len(feed._sampled),
        "metrics._names": len(feed._names),
        "metrics._slots": len(feed._slots),
        "metrics._cow._scans": len(feed._cow._scans),
        "live.trends": len(live.trends),
        "live.scanned": len(live.scanned),
        "writer.pending": len(sampler.writer._chunker.pending),
        "libraries._read": len(libraries._read),
        "libraries._parents": len(libraries._parents),
    }
    if tree.follower is not None:
        counts["follower.watched"] = tree.follower.watched
        counts["follower._last_exit"] = len(tree.follower._last_exit)
    return counts


@pytest.mark.slow
def test_per_process_state_is_bounded_by_the_live_tree(
    churn: subprocess.Popen[str], tmp_path: os.PathLike[str]
) -> None:
    # GIVEN a recording of a tree that recycles its workers, with every feature's hook
    procfs = ProcFS()
    follower, _ = follow_births(procfs)
    tree = ProcessTree(procfs, churn.pid, exclude={os.getpid()}, follower=follower)
    writer = RecordingWriter(os.path.join(tmp_path, "churn.memscope"), {})
    hooks: dict[str, object] = {
        "cow": CowScheduler(),
        "libraries": LibraryWatch(),
        "leaks": LeakHook(LeakConfig(census=True, leak_interval=0.2)),
        "metrics": MetricsFeed(SnapshotBox()),
        "live": LiveView(Console(file=io.StringIO(), width=120, height=40)),
    }
    sampler = Sampler(procfs, tree, writer, hooks=list(hooks.values()))  # type: ignore[arg-type]
    born: set[tuple[int, int]] = set()
    ended: set[tuple[int, int]] = set()
    worst: dict[str, int] = {}
    sampler.start_hooks()
    try:
        # WHEN it samples until dozens of processes have been born and have ended
        deadline = time.monotonic() + 240
        while len(ended) < BIRTHS and time.monotonic() < deadline:
            context = sampler.tick()
            now = {m.key for m in context.members if not m.exited}
            ended |= born - now
            born |= now
            if len(ended) >= BIRTHS // 4:  # after the first few generations: record the worst
                for name, n in kept_per_process(sampler, hooks).items():
                    worst[name] = max(worst.get(name, 0), n)
            time.sleep(0.05)
        # THEN no structure holds more entries than the live tree and a few processes
        # whose exit is being noticed: nothing grows with the processes that came and went
        assert len(ended) >= BIRTHS, f"only {len(ended)} processes ended in 240 s"
        assert sampler.tree.roles.forgotten >= BIRTHS - 10
        assert worst, "no sample taken"
        # root + 4 workers alive; a recycled slot is briefly held by the old and the new one
        bound = 1 + 4 + 4
        too_many = {name: n for name, n in worst.items() if n > bound}
        assert not too_many, (too_many, worst)
        # ... and what is kept belongs to the live tree
        live = {m.key for m in tree.members.values()}
        assert set(sampler.tree.roles.nodes) <= live | set(sampler.tree.roles._ended)
        if follower is not None:
            with follower._lock:  # (births read by its thread, not yet taken by the tree)
                watched = set(follower._watched)
                pending = {f.pid for f in follower._facts if isinstance(f, Birth)}
            assert watched <= {m.pid for m in tree.members.values()} | set(
                tree._departed) | pending
    finally:
        sampler.close_hooks()
        writer.close()
        if follower is not None:
            follower.close()


_WRITER_PROBE = """
import json, os, random, sys
from memscope._malloc import return_freed_buffers
from memscope.recording import RecordingWriter
return_freed_buffers()
path = sys.argv[1]

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

writer = RecordingWriter(path, {})
rng = random.Random(17)
ids, t, tick, marks = [], 0.0, 0, {}
while os.path.getsize(path) < 4 << 20:
    tick += 1
    t += 0.2
    if tick % 600 == 1:  # a new generation of 16 workers every 2 minutes
        for i in ids:
            writer.mark_exited(i, t, 0)
        ids = [writer.add_process(pid=1000 + tick + i, start_ticks=tick, ppid=1, parent_id=None,
                                  role="worker", cmdline=["w"], exe=None, python_version=None,
                                  started_at=t) for i in range(16)]
    writer.add_samples([(i, t, rng.randint(1 << 20, 1 << 26), *([None] * 12), 4096)
                        for i in ids])
    writer.add_tick(t, 0.001, 0.001, 16, 0)
    if tick % 3 == 0:
        writer.flush()
    if "half" not in marks and os.path.getsize(path) >= 1 << 19:
        marks["half"] = rss()
marks["four"] = rss()
writer.close()
print(json.dumps(marks))
"""


@pytest.mark.slow
def test_the_writer_memory_does_not_grow_with_the_recording(
    tmp_path: os.PathLike[str],
) -> None:
    """SQLite's default 2 MiB page cache filled as the recording grew (memscope's RSS crept
    by 2 MiB over a soak's first 40 minutes); the writer's is 512 KiB."""
    # GIVEN a recording written as a 16-worker tree's at 0.2 s ticks, workers recycled
    out = subprocess.run([sys.executable, "-c", _WRITER_PROBE,
                          os.path.join(tmp_path, "w.memscope")],
                         capture_output=True, text=True, timeout=600, check=True)
    marks = json.loads(out.stdout)
    # WHEN it grew from 0.5 MiB to 4 MiB, THEN the writer's RSS grew by less than 1 MiB
    assert marks["four"] - marks["half"] <= 1 << 20, marks
