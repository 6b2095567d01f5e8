"""Leak analysis (pure): Theil–Sen with Sen's interval and Mann–Kendall confidence, verdicts,
sibling comparison and growth naming, on exact series and on a captured real recording."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from memscope.analysis.leaks import (
    Growing,
    LeakOptions,
    compare_siblings,
    growing_from_series,
    leak_verdict,
    theil_sen,
)
from tests.conftest import DATA


def test_theil_sen_is_exact_on_a_line_and_robust_to_outliers() -> None:
    t = np.arange(50, dtype=float)
    y = 1000.0 + 250.0 * t
    g = theil_sen(t, y)
    assert g.slope == pytest.approx(250.0) and g.intercept == pytest.approx(1000.0)
    assert g.lo == pytest.approx(250.0) and g.hi == pytest.approx(250.0)
    y[::5] += 1e9  # 20% wild outliers (e.g. a transient spike while a request is served)
    assert theil_sen(t, y).slope == pytest.approx(250.0)


def test_interval_covers_truth_and_confidence_separates_trend_from_noise() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(0, 30, 0.25)
    noise = rng.normal(0, 300_000, len(t))
    up = theil_sen(t, 5e7 + 80_000 * t + noise)
    flat = theil_sen(t, 5e7 + noise)
    assert up.lo < 80_000 < up.hi
    assert up.confidence > 0.999
    assert flat.lo < 0 < flat.hi
    assert flat.confidence < 0.99


def test_verdicts() -> None:
    t = np.arange(0, 20, 0.2)
    assert leak_verdict(t, 1e8 + 50_000 * t).verdict == "leak"
    assert leak_verdict(t, np.full(len(t), 1e8)).verdict == "stable"
    # growth below the minimum rate, or a few pages over the window, is not a leak
    assert leak_verdict(t, 1e8 + 500 * t).verdict == "stable"
    assert leak_verdict(t[:45], 1e8 + 4096 * t[:45]).verdict == "stable"
    # too short after warm-up, or too few samples
    assert leak_verdict(t[:20], 1e8 + 50_000 * t[:20]).verdict == "insufficient-data"
    assert leak_verdict([], []).verdict == "insufficient-data"
    opts = LeakOptions(warmup_s=0, min_samples=3, min_span_s=1)
    assert leak_verdict([0, 1, 2, 3], [0, 1e6, 2e6, 3e6], opts).verdict == "leak"


def test_warmup_ignores_the_start_up_ramp() -> None:
    t = np.arange(0, 20, 0.2)
    y = np.where(t < 1, 2e7 * t, 2e7)  # imports: fast growth, then flat
    r = leak_verdict(t, y)
    assert r.verdict == "stable" and r.slope_bytes_per_s == 0


def test_siblings_median_excludes_self() -> None:
    t = np.arange(0, 20, 0.2)
    results = {
        1: leak_verdict(t, 1e8 + 90_000 * t),
        2: leak_verdict(t, np.full(len(t), 1e8)),
        3: leak_verdict(t, 1e8 + 10_000 * t),
        4: leak_verdict(t, 1e8 + 10_000 * t),  # another parent
    }
    out = compare_siblings(results, {1: 100, 2: 100, 3: 100, 4: 200})
    assert out[1].siblings == 2 and out[1].sibling_median_bytes_per_s == pytest.approx(5000)
    assert out[4].siblings == 0 and out[4].sibling_median_bytes_per_s is None
    doc = out[1].to_json()
    assert doc["verdict"] == "leak" and doc["siblings"]["count"] == 2


def test_growing_names_the_growing_entries() -> None:
    series = [
        (0.0, {"bytes": 1000, "dict": 500, "str": 900}),
        (1.0, {"bytes": 101_000, "dict": 500, "str": 800}),
        (2.0, {"bytes": 201_000, "dict": 600}),
    ]
    got = growing_from_series(series, "type", top=5, min_bytes=50)
    assert got[0] == Growing("bytes", "type", 200_000, pytest.approx(100_000))
    assert [g.name for g in got] == ["bytes", "dict"]
    assert growing_from_series(series[:1], "type") == []


def test_captured_leaky_worker_recording() -> None:
    with open(os.path.join(DATA, "leaks", "leaky_worker_3.11.json")) as f:
        data = json.load(f)
    truth = data["truth_leak_bytes_per_s"]
    for p in data["processes"]:
        if p["role"] != "worker":
            continue
        rows = np.asarray([r for r in p["samples"] if r[2] is not None], dtype=float)
        r = leak_verdict(rows[:, 0], rows[:, 2] - rows[:, 3])  # anonymous RSS, every tick
        if p["pid"] in data["leaky_pids"]:
            assert r.verdict == "leak"
            assert r.slope_bytes_per_s == pytest.approx(truth, rel=0.2)
        else:
            assert r.verdict == "stable"
