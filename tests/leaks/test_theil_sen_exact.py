"""Theil–Sen after issue 15's report speed-up gives the same Growth, bit for bit, as the
implementation it replaced (kept here verbatim as the reference): on captured real series,
on the bench's kind of series (thinned to 400 points: the band selection), and on awkward
inputs (tied and unsorted times, tied values, NaN)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memscope.analysis import leaks
from memscope.analysis.leaks import Growth, _select, _z, median, theil_sen
from memscope.recording import open_recording
from tests.conftest import DATA

LEAKY = Path(__file__).parents[1] / "data" / "recordings" / "schema3-leaky_worker.memscope"


def reference_theil_sen(t: Any, y: Any, level: float = 0.95) -> Growth:
    """memscope/analysis/leaks.py's theil_sen at f93bc6f, verbatim."""
    ta, ya = leaks._thin(np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64))
    n = len(ta)
    if n < 2:
        raise ValueError("theil_sen needs at least two points")
    i, j = np.triu_indices(n, k=1)
    dt = ta[j] - ta[i]
    dy = ya[j] - ya[i]
    ok = dt > 0
    slopes = dy[ok] / dt[ok]
    m = len(slopes)
    if not m:
        raise ValueError("theil_sen needs two distinct times")
    s = float(np.sign(dy[ok]).sum())
    _, ties = np.unique(ya, return_counts=True)
    var = (n * (n - 1) * (2 * n + 5) - float((ties * (ties - 1) * (2 * ties + 5)).sum())) / 18.0
    c = _z(level) * math.sqrt(var) if var > 0 else 0.0
    lo_i = int(max(0, math.floor((m - c) / 2.0)))
    hi_i = int(min(m - 1, math.ceil((m + c) / 2.0)))
    slopes = np.partition(slopes, sorted({(m - 1) // 2, m // 2, lo_i, hi_i}))
    slope = float((slopes[(m - 1) // 2] + slopes[m // 2]) / 2.0)
    intercept = float(np.median(ya - slope * ta))
    if var <= 0:
        return Growth(slope, intercept, slope, slope, 0.5, n, float(ta[-1] - ta[0]))
    z = (s - math.copysign(1.0, s)) / math.sqrt(var) if s else 0.0
    return Growth(
        slope, intercept, float(slopes[lo_i]), float(slopes[hi_i]), leaks._phi(z), n,
        float(ta[-1] - ta[0]),
    )


def _outcome(f: Any, t: Any, y: Any) -> str:
    try:
        return repr(f(t, y))  # repr: floats to the last bit, NaN included
    except ValueError as exc:
        return f"ValueError({exc})"


def _real_series() -> list[tuple[Any, Any]]:
    series = []
    with open(os.path.join(DATA, "leaks", "leaky_worker_3.11.json")) as f:
        for p in json.load(f)["processes"]:
            rows = np.asarray([r for r in p["samples"] if r[2] is not None], dtype=float)
            series.append((rows[:, 0], rows[:, 2] - rows[:, 3]))
    rec = open_recording(str(LEAKY))
    cols = rec.columns(("rss", "uss", "rss_shared"))
    for pid in np.unique(cols.process_id).tolist():
        one = cols.of(pid)
        anon = one.values["rss"] - one.values["rss_shared"]
        has_uss = ~np.isnan(one.values["uss"])
        series += [(one.t, anon), (one.t[has_uss], one.values["uss"][has_uss])]
    rec.close()
    return series


def test_equal_to_the_reference_on_captured_real_series() -> None:
    series = _real_series()
    assert len(series) == 13 and max(t.size for t, _ in series) > leaks._MAX_POINTS  # thinned
    for t, y in series:
        assert _outcome(theil_sen, t, y) == _outcome(reference_theil_sen, t, y)
        for n in (2, 3, 90):  # short prefixes: the whole-partition path
            assert _outcome(theil_sen, t[:n], y[:n]) == _outcome(reference_theil_sen, t[:n], y[:n])


def test_equal_to_the_reference_on_awkward_series() -> None:
    rng = np.random.default_rng(15)
    for k in range(400):
        n = int(rng.integers(2, 1500))
        t = np.sort(rng.integers(0, max(2, n // (1 + k % 3)), n).astype(float))  # tied times
        y = rng.integers(0, 1 + k % 40, n).astype(float) * 4096  # tied values
        if k % 4 == 0:
            y += rng.normal(0, 1e6, n) + 5e4 * t  # noise and a trend
        if k % 5 == 0:
            t = rng.permutation(t)  # unsorted: pairs going back in time are left out
        if k % 7 == 0:
            y[int(rng.integers(0, n))] = np.nan
        if k % 11 == 0:
            t = t[:1].repeat(n)  # one time only
        assert _outcome(theil_sen, t, y) == _outcome(reference_theil_sen, t, y), k


def test_select_is_partition_at_the_ranks() -> None:
    rng = np.random.default_rng(3)
    cases = [
        rng.normal(0, 1, 79_800),  # the pairwise slopes of 400 points
        rng.integers(0, 5, 79_800).astype(float),  # heavy ties
        np.r_[rng.normal(0, 1, 50_000), np.full(20, np.nan)],  # NaN: sorted last
        np.r_[np.zeros(40_000), np.ones(40_000)],
    ]
    skewed = rng.normal(0, 1, 80_000)
    skewed[::39] = 1e9  # every sampled value is an outlier: the bounds miss, all partitioned
    cases.append(skewed)
    for values in cases:
        m = values.size
        for ranks in ([m // 2], [(m - 1) // 2, m // 2], [0, m // 2, m - 1],
                      [int(m * 0.46), (m - 1) // 2, m // 2, int(m * 0.54)]):
            want = np.partition(values, ranks)[ranks]
            assert _select(values, ranks).tobytes() == want.tobytes()


def test_select_partitions_only_a_band_of_the_slopes(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the pairwise slopes of a 400-point noisy series (what a report computes per process)
    rng = np.random.default_rng(1)
    t = np.arange(400) * 0.2
    slopes = []
    real_partition = np.partition

    def spy(a: Any, kth: Any, *args: Any, **kwargs: Any) -> Any:
        slopes.append(np.asarray(a).size)
        return real_partition(a, kth, *args, **kwargs)

    y = 1e8 + 4096 * t + rng.normal(0, 2e5, 400)
    monkeypatch.setattr(np, "partition", spy)
    g = theil_sen(t, y)
    monkeypatch.undo()
    # THEN one partition, of a band under a quarter of the 79,800 slopes, and the same result
    assert len(slopes) == 1 and slopes[0] < 79_800 / 4
    assert repr(g) == repr(reference_theil_sen(t, y))


def test_median_is_numpys_bit_for_bit() -> None:
    # GIVEN arrays of odd and even sizes, ties, signed zeros, infinities and NaN
    rng = np.random.default_rng(17)
    cases: list[Any] = [[0.0], [-0.0, -0.0], [0.0, -0.0], [1.0, 2.0], [np.inf, -np.inf],
                        [np.nan], [1.0, np.nan, 2.0], [3.0, -0.0, 0.0], [2.0**53, 1.0, 2.0**53 + 2]]
    for k in range(300):
        n = int(rng.integers(1, 900))
        a = rng.normal(0, 10.0 ** int(rng.integers(-3, 12)), n)
        if k % 3 == 0:
            a = np.round(a, 0)  # ties
        if k % 13 == 0:
            a[int(rng.integers(0, n))] = np.nan
        cases.append(a)
    with np.errstate(invalid="ignore"):  # -inf + inf, in both
        for a in cases:
            # THEN memscope's median is np.median to the last bit (repr: sign of zero, NaN)
            assert repr(median(a)) == repr(float(np.median(np.asarray(a, dtype=np.float64)))), a
            assert repr(median(list(a))) == repr(median(np.asarray(a)))


def test_median_of_nothing_is_nan() -> None:
    assert math.isnan(median([]))
