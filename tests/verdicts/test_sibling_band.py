"""The sibling noise band of compare_siblings (pure; series shaped like the workers'
RssAnon: a line plus page-sized steps)."""

from __future__ import annotations

import numpy as np

from memscope.analysis.leaks import LeakOptions, compare_siblings, leak_verdict

KiB = 1024
T = np.arange(0, 12, 0.1)


def worker(rate: float) -> np.ndarray:
    return 30e6 + np.floor(rate * T / 4096) * 4096  # grows page by page


def test_fastest_of_alike_siblings_is_not_singled_out() -> None:
    # GIVEN three workers of one parent growing 150, 170 and 230 KiB/s: on its own the fastest
    # passes every test (2.4 MiB > 2 MiB), the median sibling does not
    opts = LeakOptions(min_growth=2 << 20)
    results = {i: leak_verdict(T, worker(r * KiB), opts) for i, r in enumerate((150, 170, 230))}
    assert results[2].verdict == "leak"
    out = compare_siblings(results, {0: 1, 1: 1, 2: 1}, opts)
    # THEN it is stable, within the siblings' noise
    assert out[2].verdict == "stable" and out[2].reason.startswith("within sibling noise")


def test_an_outlier_and_alike_leaks_stay_leaks() -> None:
    opts = LeakOptions(min_growth=2 << 20)
    one = {i: leak_verdict(T, worker(r * KiB), opts) for i, r in enumerate((0, 2, 1, 400))}
    out = compare_siblings(one, dict.fromkeys(one, 1), opts)
    assert [r.verdict for r in out.values()] == ["stable"] * 3 + ["leak"]
    assert out[3].reason.startswith("above its siblings' median")
    alike = {i: leak_verdict(T, worker(r * KiB), opts) for i, r in enumerate((390, 400, 420))}
    out = compare_siblings(alike, dict.fromkeys(alike, 1), opts)
    assert all(r.verdict == "leak" for r in out.values())  # every worker leaks alike
    assert out[2].reason.startswith("its siblings grow alike")
    two = {i: leak_verdict(T, worker(r * KiB), opts) for i, r in enumerate((0, 400))}
    assert compare_siblings(two, {0: 1, 1: 1}, opts)[1].verdict == "leak"  # no band with 2
