"""The live exporter: each tick's snapshot, scraped, equals what the sampler measured.

GIVEN a real tree (tests/metrics/forker.py) whose workers touch known amounts of memory,
sampled tick by tick with a MetricsFeed hook
WHEN the registry is scraped
THEN the per-slot values are the sampler's own rollups (and the recording's rows), workers
differ by the memory they touched, recycled workers reuse their slot, and extra sources (COW
scans) appear only when something measured them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memscope.sampler import TickContext

from ._support import PYTHONS, Forker, Live, MiB, by_slot, python_for


@pytest.mark.parametrize("version", PYTHONS)
def test_scrape_equals_the_sampled_rollups_on_every_python(version: str, tmp_path: Path) -> None:
    tree = Forker(python_for(version))
    live = Live(tree.pid, tmp_path / "r.memscope")
    try:
        small, big = tree.fork(4), tree.fork(12)
        ctx, series = live.tick()
        pids = by_slot(series, "memscope_process_pid", "worker")
        uss = by_slot(series, "memscope_process_uss_bytes", "worker")
        assert pids == {0: small, 1: big}  # slots in birth order
        for slot, pid in pids.items():
            rollup = ctx.latest[live.record_id(int(pid))]
            assert uss[slot] == rollup.uss
            assert by_slot(series, "memscope_process_pss_bytes", "worker")[slot] == rollup.pss
            assert by_slot(series, "memscope_process_rss_bytes", "worker")[slot] == rollup.rss
        # The big worker touched 8 MiB more than the small one, after the same fork.
        assert abs((uss[1] - uss[0]) - 8 * MiB) < 1 * MiB
        assert by_slot(series, "memscope_process_pid", "root") == {0: tree.pid}
        root_labels = next(dict(lbl) for (name, lbl) in series
                           if name == "memscope_process_uss_bytes" and ("role", "root") in lbl)
        assert root_labels["command"] == "forker.py"
        assert series[("memscope_tree_workers", ())] == 2
        assert series[("memscope_tree_processes", ())] == 3
        pss = [v for (name, _), v in series.items() if name == "memscope_process_pss_bytes"]
        assert series[("memscope_tree_pss_bytes", ())] == sum(pss)
        # The recording holds the very rows the endpoint shows.
        row = live.writer.conn.execute(
            "SELECT uss FROM samples WHERE process_id = ? AND uss IS NOT NULL"
            " ORDER BY t DESC LIMIT 1", (live.record_id(big),),
        ).fetchone()
        assert row[0] == uss[1]
        assert not any(name.startswith("memscope_process_cow_") for name, _ in series)
    finally:
        tree.close()
        live.close()


def test_recycled_workers_reuse_their_slot(forker: Forker, live: Live) -> None:
    first, second = forker.fork(2), forker.fork(2)
    live.tick()
    forker.kill(first)
    _, series = live.tick()
    assert by_slot(series, "memscope_process_pid", "worker") == {1: second}
    assert series[("memscope_tree_workers", ())] == 1
    third = forker.fork(2)
    _, series = live.tick()
    assert by_slot(series, "memscope_process_pid", "worker") == {0: third, 1: second}
    names = {lbl for name, lbl in series if name == "memscope_process_uss_bytes"}
    assert len(names) == 3  # root + two worker slots, however many workers lived


def test_cow_scans_become_series_once_a_scan_exists(forker: Forker, live: Live) -> None:
    worker = forker.fork(3)
    # The COW scanner's table (memscope.cow.store), unless importing it already created it.
    live.writer.execute(
        "CREATE TABLE IF NOT EXISTS cow_scans (id INTEGER PRIMARY KEY, process_id INTEGER"
        " NOT NULL, pid INTEGER NOT NULL, parent_pid INTEGER NOT NULL, t REAL NOT NULL,"
        " mode TEXT NOT NULL, inherited_bytes INTEGER NOT NULL, copied_bytes INTEGER NOT NULL,"
        " shared_bytes INTEGER NOT NULL, new_private_bytes INTEGER NOT NULL,"
        " swapped_bytes INTEGER NOT NULL, target TEXT NOT NULL, duration_s REAL NOT NULL)"
    )
    ctx, series = live.tick()
    assert not any(name.startswith("memscope_process_cow_") for name, _ in series)
    # A scan row as the COW scanner writes one, from this worker's real rollup.
    rollup = ctx.latest[live.record_id(worker)]
    copied, shared = rollup.private_dirty, rollup.shared_clean + rollup.shared_dirty
    live.writer.execute(
        "INSERT INTO cow_scans (process_id, pid, parent_pid, t, mode, inherited_bytes,"
        " copied_bytes, shared_bytes, new_private_bytes, swapped_bytes, target, duration_s)"
        " VALUES (?, ?, ?, ?, 'exclusive-bit', ?, ?, ?, 0, 0, '', 0)",
        (live.record_id(worker), worker, forker.pid, ctx.t, copied + shared, copied, shared),
    )
    _, series = live.tick()
    assert by_slot(series, "memscope_process_cow_copied_bytes", "worker") == {0: copied}
    assert by_slot(series, "memscope_process_cow_shared_bytes", "worker") == {0: shared}
    assert by_slot(series, "memscope_process_cow_inherited_bytes", "worker") == {
        0: copied + shared
    }
    assert series[("memscope_tree_cow_copied_bytes", ())] == copied
    assert by_slot(series, "memscope_process_cow_copied_bytes", "root") == {}


def test_a_failing_source_is_dropped_and_sampling_goes_on(
    forker: Forker, live: Live,
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = forker.fork(1)

    def slope(ctx: TickContext) -> dict[int, dict[str, float]]:
        rid = live.record_id(worker)
        return {rid: {"leak_slope": float(ctx.latest[rid].uss) / 60, "unknown_key": 1.0}}

    def broken(ctx: TickContext) -> dict[int, dict[str, float]]:
        raise RuntimeError("scanner exploded")

    live.feed.sources[:] = [broken, slope]
    live.tick()
    ctx, series = live.tick()
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "metrics source" in err
    assert "scanner exploded" in err
    rid = live.record_id(worker)
    assert by_slot(series, "memscope_process_leak_slope_bytes_per_second", "worker") == {
        0: ctx.latest[rid].uss / 60
    }
    assert not any("unknown_key" in name for name, _ in series)
    assert series[("memscope_sampler_ticks_total", ())] == 2
