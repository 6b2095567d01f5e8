"""Site estimates: one lookup per block per origin, a bounded sample, honest intervals.

The resolver here is a table (address -> site) that counts the lookups it is asked for, so
the estimator's arithmetic is checked against an exact answer; the agent side (real
tracemalloc lookups) is tested in tests/agent.
"""

from __future__ import annotations

import time

import numpy as np

from memscope.cow.site_estimate import UNTRACED, OriginCache, estimate_sites, sample_pages

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


def test_workers_copying_the_same_blocks_share_one_sample() -> None:
    """The sample is drawn by a hash of each address (salted per origin): a second worker
    copying the same blocks finds its whole sample looked up by the first one."""
    starts, site, nbytes = table(200_000)
    resolver, cache = Resolver(starts, site), OriginCache()
    _, first = estimate_sites(starts, nbytes, cache, resolver, 20_000, seed=7)
    asked = resolver.asked
    found, second = estimate_sites(starts, nbytes, cache, resolver, 20_000, seed=7)
    assert resolver.asked == asked and second.looked_up == 0
    assert second.cached == first.looked_up
    assert found[0].site == "app.py:10"


def test_time_bound_cuts_the_lookups_to_a_smaller_sample() -> None:
    """Lookups go in hash order and stop after `seconds`: the sample is the blocks hashed
    below the first one not looked up, and its interval still covers the truth."""
    starts, site, nbytes = table(200_000)
    want = truth(site, nbytes)

    class Slow(Resolver):
        def __call__(self, addrs: np.ndarray) -> tuple[list, np.ndarray]:
            time.sleep(0.05)  # a slow origin
            return super().__call__(addrs)

    resolver = Slow(starts, site)
    found, stats = estimate_sites(starts, nbytes, OriginCache(), resolver, 100_000, seed=3,
                                  seconds=0.12, chunk=5_000)
    # at least the first request (2,000 lookups: it measures the origin's rate), not all
    assert 2_000 <= stats.looked_up < 100_000 and resolver.asked == stats.looked_up
    assert stats.sample_rate < 0.5 and stats.sampled_bytes > 0
    top = found[0]
    assert top.site == "app.py:10" and abs(top.bytes - want["app.py:10"]) <= 2 * top.ci_bytes


def test_requests_are_sized_to_end_within_the_time_bound() -> None:
    """An origin answering 20 us per lookup and a 0.3 s bound: a fixed 50,000-lookup request
    would take 1 s; requests are sized from the measured rate and end within the bound."""
    starts, site, nbytes = table(200_000)

    class PerLookup(Resolver):
        def __call__(self, addrs: np.ndarray) -> tuple[list, np.ndarray]:
            time.sleep(20e-6 * len(addrs))
            return super().__call__(addrs)

    resolver = PerLookup(starts, site)
    _, stats = estimate_sites(starts, nbytes, OriginCache(), resolver, 150_000, seed=3,
                              seconds=0.3, chunk=50_000)
    assert stats.seconds < 0.3 * 1.5  # the bound, the estimates after the lookups (a fixed
    # request: 1 s)
    # most of the bound went to lookups (the last request was not skipped)
    assert 0.5 * 0.3 / 20e-6 <= stats.looked_up < 0.3 / 20e-6


def test_page_sample_is_the_same_in_every_worker() -> None:
    pages = (np.arange(100_000, dtype=np.uint64) + np.uint64(1 << 28)) << np.uint64(12)
    kept, rate = sample_pages(pages, 4096)
    other, rate2 = sample_pages(pages[::2], 4096)  # a worker that copied half of them
    assert abs(len(kept) - 4096) < 400 and rate == len(kept) / len(pages)
    assert rate2 > rate  # a higher threshold: it keeps every kept page it copied, and more
    assert set(kept.tolist()) & set(pages[::2].tolist()) <= set(other.tolist())
    small, rate3 = sample_pages(pages[:100], 4096)
    assert rate3 == 1.0 and len(small) == 100
