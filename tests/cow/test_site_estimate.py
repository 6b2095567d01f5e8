"""Site estimates: one lookup per block per origin, a bounded sample, honest intervals.

The resolver here is a table (address -> site) that counts the lookups it is asked for, so
the estimator's arithmetic is checked against an exact answer; the agent side (real
tracemalloc lookups) is tested in tests/agent.
"""

from __future__ import annotations

import numpy as np

from memscope.cow.site_estimate import UNTRACED, OriginCache, estimate_sites

SITES = [(("app.py", 10),), (("app.py", 20),), (("lib.py", 5),)]


def table(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(1 << 40, n, replace=False)).astype(np.uint64) << np.uint64(4)
    site = rng.choice([0, 1, 2, -1], n, p=[0.6, 0.25, 0.1, 0.05]).astype(np.int64)
    nbytes = rng.choice([32, 48, 64, 600], n).astype(np.int64)
    return starts, site, nbytes


class Resolver:
    def __init__(self, starts: np.ndarray, site: np.ndarray) -> None:
        self.starts, self.site, self.asked = starts, site, 0

    def __call__(self, addrs: np.ndarray) -> tuple[list, np.ndarray]:
        self.asked += len(addrs)
        return list(SITES), self.site[np.searchsorted(self.starts, addrs)]


def truth(site: np.ndarray, nbytes: np.ndarray) -> dict[str, int]:
    names = ["app.py:10", "app.py:20", "lib.py:5", UNTRACED]
    return {names[s]: int(nbytes[site == s].sum()) for s in (0, 1, 2, -1)}


def test_exact_within_budget_and_each_block_looked_up_once_per_origin() -> None:
    starts, site, nbytes = table(50_000)
    resolver, cache = Resolver(starts, site), OriginCache()
    found, stats = estimate_sites(starts, nbytes, cache, resolver, budget=100_000)
    assert {s.site: s.bytes for s in found} == truth(site, nbytes)
    assert all(s.ci_bytes == 0 for s in found)
    assert stats.looked_up == 50_000 and stats.sampled_bytes == 0
    assert stats.untraced_bytes == truth(site, nbytes)[UNTRACED]
    # A second worker copying most of the same blocks: only the new ones are looked up.
    again = np.concatenate((starts[:40_000], starts[-1:] + np.uint64(16)))
    resolver.starts = np.sort(np.concatenate((starts, again[-1:])))
    resolver.site = np.concatenate((site, [0]))
    _, stats2 = estimate_sites(again, np.full(len(again), 32, np.int64), cache, resolver)
    assert stats2.cached == 40_000 and stats2.looked_up == 1
    assert resolver.asked == 50_001


def test_sampled_estimates_cover_the_truth() -> None:
    starts, site, nbytes = table(200_000)
    want = truth(site, nbytes)
    covered = trials = 0
    for seed in range(40):
        resolver = Resolver(starts, site)
        found, stats = estimate_sites(starts, nbytes, OriginCache(), resolver, 20_000, seed)
        assert resolver.asked <= 20_000 * 1.1 and stats.sample_rate == 0.1
        assert stats.resolved_bytes + stats.sampled_bytes == int(nbytes.sum())
        for s in found:
            trials += 1
            covered += abs(s.bytes - want[s.site]) <= s.ci_bytes
        assert found[0].site == "app.py:10"
        assert abs(found[0].bytes - want["app.py:10"]) <= 2 * found[0].ci_bytes  # ~4 sigma
    assert covered / trials >= 0.88  # 95% intervals; a wrong variance fails this
