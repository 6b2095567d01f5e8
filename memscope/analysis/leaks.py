"""Leak verdicts: a robust growth estimate of each process's USS, with confidence, compared with
its siblings, plus the sites or types that grow. Pure functions of arrays and mappings.

Method (per process, samples after warm-up):
- slope: Theil–Sen (median of pairwise slopes), robust to the step-wise growth of allocator
  arenas and to outliers (breakdown point ~29%);
- confidence: one-sided Mann–Kendall test of an upward trend, Φ(z) with the tie-corrected
  variance of Kendall's S; the slope's confidence interval is Sen's (ranks of the pairwise
  slopes at ±z·sqrt(var S)/2);
- verdict: `insufficient-data` with fewer than `min_samples` samples or less than
  `min_span_s` seconds after warm-up; `leak` when the lower bound of the interval is above zero,
  the slope is at least `min_rate` bytes/s and the fitted growth over the window is at least
  `min_growth` bytes (fewer are a few pages of noise); otherwise `stable`. The slowest leak a
  window of W seconds can show is therefore max(min_rate, min_growth / W);
- siblings (compare_siblings): workers of one parent run the same code, so their slopes show
  the noise of the workload (with 3 or more judged siblings, the process included). A worker
  whose own test says `leak` stays `leak` only when it is an outlier among its siblings
  (slope above their median by more than `sibling_k` robust standard deviations, at least
  `min_rate`) or when the siblings' median slope is itself a leak (every worker leaks
  alike); otherwise it is `stable` "within sibling noise";
- confidence and the interval are reported only with a verdict (`leak`/`stable`), never with
  `insufficient-data`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Growing",
    "Growth",
    "LeakOptions",
    "LeakResult",
    "compare_siblings",
    "growing_from_series",
    "leak_verdict",
    "median",
    "theil_sen",
    "warmup_start",
]

F64 = npt.NDArray[np.float64]
_MAX_POINTS = 400  # pairwise slopes are O(n²): thin longer series evenly
_SELECT_MIN = 4096  # fewer pairwise slopes are partitioned whole (_select)
_SELECT_SAMPLE = 2048  # about this many slopes sampled to bound the ranks wanted
_SELECT_MARGIN = 64  # sample ranks added each side: ~5.7 standard errors of a quantile


@dataclass(frozen=True)
class LeakOptions:
    warmup_s: float = 1.0  # ignore at least this long after the first sample
    warmup_fraction: float = 0.1  # ... or this fraction of the span, whichever is longer
    min_samples: int = 8
    min_span_s: float = 5.0
    min_rate: float = 1024.0  # bytes/s: slower growth is reported `stable`
    min_growth: float = 256 * 1024  # bytes over the window: less is page-level noise
    level: float = 0.95  # confidence level of the interval and of the verdict
    sibling_k: float = 3.0  # robust standard deviations of sibling slopes: the noise band


@dataclass(frozen=True)
class Growth:
    slope: float  # bytes per second
    intercept: float
    lo: float  # Sen confidence interval of the slope at `level`
    hi: float
    confidence: float  # one-sided Mann–Kendall: probability-like evidence of growth, 0..1
    n: int
    span_s: float


@dataclass(frozen=True)
class Growing:
    name: str  # "file:line" or a type name
    kind: str  # "site" | "type"
    bytes: int  # growth over the observed window
    bytes_per_s: float


@dataclass(frozen=True)
class LeakResult:
    verdict: str  # "leak" | "stable" | "insufficient-data"
    growth: Growth | None
    growing: tuple[Growing, ...] = ()
    siblings: int = 0
    sibling_median_bytes_per_s: float | None = None
    series: str = "uss"  # the memory series the slope was fitted to
    reason: str = ""  # why the verdict, in a few words

    @property
    def judged(self) -> bool:
        return self.verdict != "insufficient-data"

    @property
    def slope_bytes_per_s(self) -> float | None:
        return None if self.growth is None else self.growth.slope

    def to_json(self) -> dict[str, Any]:
        g = self.growth
        j = g if self.judged else None  # no confidence without a verdict
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "series": self.series,
            "slope_bytes_per_s": None if g is None else round(g.slope, 3),
            "confidence": None if j is None else round(j.confidence, 4),
            "ci_bytes_per_s": None if j is None else [round(j.lo, 3), round(j.hi, 3)],
            "samples": 0 if g is None else g.n,
            "window_s": 0.0 if g is None else round(g.span_s, 3),
            "siblings": {
                "count": self.siblings,
                "median_bytes_per_s": self.sibling_median_bytes_per_s,
            },
            "growing": [
                {x.kind: x.name, "bytes": x.bytes, "bytes_per_s": round(x.bytes_per_s, 3)}
                for x in self.growing
            ],
        }


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _z(level: float) -> float:
    lo, hi = 0.0, 10.0  # invert Φ by bisection (two-sided interval at `level`)
    target = 1.0 - (1.0 - level) / 2.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if _phi(mid) < target else (lo, mid)
    return (lo + hi) / 2.0


def _thin(t: F64, y: F64) -> tuple[F64, F64]:
    if len(t) <= _MAX_POINTS:
        return t, y
    idx = np.unique(np.linspace(0, len(t) - 1, _MAX_POINTS).round().astype(np.int64))
    return t[idx], y[idx]


@functools.lru_cache(maxsize=8)
def _pairs(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(i, j) of every pair i < j of n points, row by row; shared read-only (one per n: the
    series of a report are mostly thinned to the same _MAX_POINTS)."""
    i, j = np.triu_indices(n, k=1)
    i.flags.writeable = j.flags.writeable = False
    return i, j


def _select(values: F64, ranks: Sequence[int]) -> F64:
    """The order statistics of `values` at `ranks`: exactly np.partition(values, ranks)[ranks].

    Partitioning all the pairwise slopes dominated the leak analysis of a large report; the
    ranks needed (the median and Sen's interval) lie in a narrow band. So the band's bounds
    are read from an evenly spaced sample (with a margin), and only the values between them
    are partitioned: the values below the lower bound take exactly the ranks before the
    band, so ranks inside it are found there. When the bounds miss (a rank outside the band,
    NaN), everything is partitioned as before."""
    m = values.size
    if m < _SELECT_MIN:
        return np.partition(values, ranks)[list(ranks)]
    sample = np.sort(values[::m // _SELECT_SAMPLE])
    s = sample.size
    lo = sample[max(0, min(ranks) * s // m - _SELECT_MARGIN)]
    hi = sample[min(s - 1, max(ranks) * s // m + _SELECT_MARGIN)]
    below = int(np.count_nonzero(values < lo))
    band = values[(values >= lo) & (values <= hi)]
    if below <= min(ranks) and max(ranks) < below + band.size:
        inside = [r - below for r in ranks]
        return np.partition(band, inside)[inside]
    return np.partition(values, ranks)[list(ranks)]


def median(values: Sequence[float] | F64) -> float:
    """np.median of a flat array, bit for bit, without the import of numpy.ma that its NaN check
    makes (8-28 ms of a report's start-up): the same middle values, the same mean of them.
    Sorted, not partitioned: the arrays here are short (a thinned series, a worker's siblings)."""
    a = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = a.size
    if n == 0 or math.isnan(a[-1]):  # NaN sorts last
        return math.nan
    h = n // 2
    return float(a[h if n % 2 else h - 1:h + 1].mean())


def theil_sen(t: Sequence[float] | F64, y: Sequence[float] | F64, level: float = 0.95) -> Growth:
    """Theil–Sen slope of y(t) with Sen's interval and the Mann–Kendall confidence."""
    ta, ya = _thin(np.asarray(t, dtype=np.float64), np.asarray(y, dtype=np.float64))
    n = len(ta)
    if n < 2:
        raise ValueError("theil_sen needs at least two points")
    i, j = _pairs(n)
    dt = np.take(ta, j) - np.take(ta, i)
    dy = np.take(ya, j) - np.take(ya, i)
    if not np.all(np.diff(ta) > 0):  # else (times strictly increasing) every pair counts
        ok = dt > 0
        dt, dy = dt[ok], dy[ok]
    slopes = dy / dt
    m = len(slopes)
    if not m:
        raise ValueError("theil_sen needs two distinct times")
    if np.all(np.isfinite(ya)):  # the same sum of signs, without an array of them
        s = float(np.count_nonzero(dy > 0) - np.count_nonzero(dy < 0))
    else:
        s = float(np.sign(dy).sum())
    _, ties = np.unique(ya, return_counts=True)
    var = (n * (n - 1) * (2 * n + 5) - float((ties * (ties - 1) * (2 * ties + 5)).sum())) / 18.0
    c = _z(level) * math.sqrt(var) if var > 0 else 0.0
    lo_i = int(max(0, math.floor((m - c) / 2.0)))
    hi_i = int(min(m - 1, math.ceil((m + c) / 2.0)))
    # Only the median and the two interval ranks are needed, not every slope in order.
    ranks = sorted({(m - 1) // 2, m // 2, lo_i, hi_i})
    at = dict(zip(ranks, _select(slopes, ranks).tolist(), strict=True))
    slope = (at[(m - 1) // 2] + at[m // 2]) / 2.0
    intercept = median(ya - slope * ta)
    if var <= 0:
        return Growth(slope, intercept, slope, slope, 0.5, n, float(ta[-1] - ta[0]))
    z = (s - math.copysign(1.0, s)) / math.sqrt(var) if s else 0.0
    return Growth(slope, intercept, at[lo_i], at[hi_i], _phi(z), n, float(ta[-1] - ta[0]))


def warmup_start(t: Sequence[float] | F64, options: LeakOptions | None = None) -> float:
    """Time from which samples count (first sample + warm-up)."""
    opts = options or LeakOptions()
    if not len(t):
        return 0.0
    t0, t1 = float(np.min(t)), float(np.max(t))
    return t0 + max(opts.warmup_s, opts.warmup_fraction * (t1 - t0))


def leak_verdict(
    t: Sequence[float] | F64,
    uss: Sequence[float] | F64,
    options: LeakOptions | None = None,
    growing: Sequence[Growing] = (),
    series: str = "uss",
) -> LeakResult:
    """Verdict for one process from its (time, bytes) samples; see the module docstring."""
    opts = options or LeakOptions()
    ta = np.asarray(t, dtype=np.float64)
    ya = np.asarray(uss, dtype=np.float64)
    keep = np.isfinite(ta) & np.isfinite(ya)
    ta, ya = ta[keep], ya[keep]
    if len(ta):
        order = np.argsort(ta, kind="stable")
        ta, ya = ta[order], ya[order]
        warm = max(opts.warmup_s, opts.warmup_fraction * float(ta[-1] - ta[0]))
        after = ta >= ta[0] + warm
        ta, ya = ta[after], ya[after]
    if len(ta) < max(2, opts.min_samples) or float(ta[-1] - ta[0]) < opts.min_span_s:
        g = theil_sen(ta, ya, opts.level) if len(ta) >= 2 and ta[-1] > ta[0] else None
        span = float(ta[-1] - ta[0]) if len(ta) else 0.0
        why = f"{len(ta)} samples over {span:.1f}s after warm-up (needs {opts.min_samples}" \
            f" over {opts.min_span_s:g}s)"
        return LeakResult("insufficient-data", g, tuple(growing), series=series, reason=why)
    g = theil_sen(ta, ya, opts.level)
    verdict, why = _judge(g, opts)
    return LeakResult(verdict, g, tuple(growing), series=series, reason=why)


def _judge(g: Growth, opts: LeakOptions) -> tuple[str, str]:
    grown = g.slope * g.span_s
    if g.lo <= 0:
        return "stable", "no significant upward trend"
    if g.slope < opts.min_rate:
        return "stable", f"below the minimum rate ({opts.min_rate:g} B/s)"
    if grown < opts.min_growth:
        return "stable", f"grew {grown / 1024:.0f} KiB, below the minimum growth" \
            f" ({opts.min_growth / 1024:.0f} KiB)"
    return "leak", "significant growth above the minimum rate and growth"


def _sibling_verdict(
    r: LeakResult, slopes: Sequence[float], opts: LeakOptions
) -> tuple[str, str]:
    """`leak` survives only as an outlier among siblings or when the siblings' median leaks."""
    if r.verdict != "leak" or r.growth is None or len(slopes) < 3:
        return r.verdict, r.reason  # fewer than 3 slopes say nothing about the noise
    median_slope = median(slopes)
    sigma = 1.4826 * median(np.abs(np.asarray(slopes) - median_slope))
    band = opts.sibling_k * max(sigma, opts.min_rate)
    if r.growth.slope > median_slope + band:
        return "leak", (f"above its siblings' median {median_slope:.0f} B/s by more than"
                        f" {band:.0f} B/s")
    if median_slope >= opts.min_rate and median_slope * r.growth.span_s >= opts.min_growth:
        return "leak", f"its siblings grow alike (median {median_slope:.0f} B/s)"
    return "stable", f"within sibling noise (median {median_slope:.0f} B/s ± {band:.0f})"


def compare_siblings(
    results: Mapping[int, LeakResult],
    groups: Mapping[int, int],
    options: LeakOptions | None = None,
) -> dict[int, LeakResult]:
    """Attach, to each result, how many siblings (same group key, e.g. parent pid) it has and
    their median slope (siblings with a growth estimate only), and apply the sibling rule of
    the module docstring (all the siblings' slopes, its own included, set the noise band)."""
    opts = options or LeakOptions()
    by_group: dict[int, list[int]] = {}
    for key in results:
        if key in groups:
            by_group.setdefault(groups[key], []).append(key)
    out = dict(results)
    for members in by_group.values():
        for key in members:
            others = [
                s for k in members
                if k != key and (s := results[k].slope_bytes_per_s) is not None
            ]
            r = results[key]
            group = [
                s for k in members
                if results[k].judged and (s := results[k].slope_bytes_per_s) is not None
            ]
            verdict, reason = _sibling_verdict(r, group, opts)
            out[key] = LeakResult(
                verdict, r.growth, r.growing, len(members) - 1,
                median(others) if others else None, r.series, reason,
            )
    return out


def growing_from_series(
    series: Sequence[tuple[float, Mapping[str, int]]],
    kind: str,
    top: int = 10,
    min_bytes: int = 1,
) -> list[Growing]:
    """What grows across snapshots [(t, {name: bytes})] (type census or traced sites):
    growth over the window and a Theil–Sen rate when there are 3+ snapshots."""
    if len(series) < 2:
        return []
    series = sorted(series, key=lambda s: s[0])
    names = set().union(*(m.keys() for _, m in series))
    t = np.asarray([s[0] for s in series], dtype=np.float64)
    span = float(t[-1] - t[0])
    if span <= 0:
        return []
    out = []
    for name in names:
        y = np.asarray([m.get(name, 0) for _, m in series], dtype=np.float64)
        grew = int(y[-1] - y[0])
        if grew < min_bytes:
            continue
        rate = theil_sen(t, y).slope if len(series) >= 3 else grew / span
        if rate > 0:
            out.append(Growing(name, kind, grew, rate))
    out.sort(key=lambda g: (-g.bytes_per_s, g.name))
    return out[:top]
