"""Allocation sites of many blocks within a budget: shared lookups, sampling, intervals.

Resolving a block's site is one lookup in the tracing parent's tracemalloc table, paid on
the parent's CPU (memscope/agent/_tracing.py). Millions of copied objects would cost
seconds of the parent's time per worker. Two things keep it bounded:

- workers forked from one parent copy the same addresses: `OriginCache` keeps every answer
  of one tracing origin, and each block is looked up once for all its workers;
- at most `budget` new lookups per call: when more blocks are unknown, a uniform random
  sample of them (probability p = budget / unknown) is looked up and each sampled block
  stands for 1/p blocks. A site's bytes are then a Horvitz-Thompson estimate,
  sum(b_i / p), with variance sum((1 - p) / p^2 * b_i^2) over its sampled blocks; `ci_bytes`
  is the half-width of the 95% normal interval (0 where every block was looked up).

Blocks of an origin that the origin did not trace (allocated before tracing started, or
freed since) count as UNTRACED, like any site.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["OriginCache", "ResolutionStats", "SiteEstimate", "estimate_sites"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Frames = tuple[tuple[str, int], ...]
# resolve(addresses) -> (tracebacks, per address: index into them or -1 untraced)
Resolver = Callable[[U64], tuple[list[Frames], I64]]
UNTRACED = "<untraced>"
_Z95 = 1.959964


@dataclass(frozen=True)
class SiteEstimate:
    site: str  # "file:line" of the most recent frame, or UNTRACED
    bytes: int
    objects: int
    ci_bytes: int = 0  # 95% interval half-width of `bytes` (0: exact)
    traceback: Frames = ()


@dataclass
class ResolutionStats:
    """How one worker's blocks got their sites (stored with the sites, shown beside them)."""

    seconds: float = 0.0  # memscope wall time of the resolution
    blocks: int = 0
    looked_up: int = 0  # new lookups sent to the origin
    cached: int = 0  # blocks answered by earlier lookups (other workers, earlier scans)
    resolved_bytes: int = 0  # bytes of blocks with an exact answer (cached or looked up)
    sampled_bytes: int = 0  # bytes of blocks estimated from the sample (not looked up)
    untraced_bytes: int = 0  # bytes of looked-up blocks the origin had no trace for
    sample_rate: float = 1.0
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class OriginCache:
    """Every answer of one tracing origin: block address -> traceback id."""

    tracebacks: list[Frames] = field(default_factory=list)
    _ids: dict[Frames, int] = field(default_factory=dict)
    addrs: U64 = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    tb: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def known(self, starts: U64) -> tuple[npt.NDArray[np.bool_], I64]:
        if not len(self.addrs):
            return np.zeros(len(starts), dtype=np.bool_), np.full(len(starts), -1, np.int64)
        k = np.minimum(np.searchsorted(self.addrs, starts), len(self.addrs) - 1)
        hit = self.addrs[k] == starts
        return hit, np.where(hit, self.tb[k], -1)

    def add(self, starts: U64, tracebacks: list[Frames], index: I64) -> I64:
        """Record answers (index into `tracebacks`, -1 untraced); returns global ids."""
        local = np.array([self._id(tb) for tb in tracebacks] + [-1], dtype=np.int64)
        ids = local[index]  # -1 indexes the trailing -1
        addrs = np.concatenate((self.addrs, starts))
        order = np.argsort(addrs, kind="stable")
        self.addrs, self.tb = addrs[order], np.concatenate((self.tb, ids))[order]
        return ids

    def _id(self, tb: Frames) -> int:
        if tb not in self._ids:
            self._ids[tb] = len(self.tracebacks)
            self.tracebacks.append(tb)
        return self._ids[tb]


def estimate_sites(
    starts: U64,
    nbytes: I64,
    cache: OriginCache,
    resolve: Resolver,
    budget: int = 200_000,
    seed: int = 0,
) -> tuple[list[SiteEstimate], ResolutionStats]:
    """Sites of blocks at `starts` (unique) holding `nbytes` each, by most recent frame."""
    t0 = time.perf_counter()
    stats = ResolutionStats(blocks=len(starts))
    hit, tb = cache.known(starts)
    unknown = np.flatnonzero(~hit)
    stats.cached = int(hit.sum())
    weight = np.ones(len(starts))
    p = 1.0
    if len(unknown) > budget > 0:
        p = budget / len(unknown)
        chosen = np.random.default_rng(seed).random(len(unknown)) < p
        weight[unknown[~chosen]] = 0.0
        weight[unknown[chosen]] = 1.0 / p
        stats.sampled_bytes = int(nbytes[unknown[~chosen]].sum())
        unknown = unknown[chosen]
    if len(unknown):
        tracebacks, index = resolve(starts[unknown])
        tb[unknown] = cache.add(starts[unknown], tracebacks, index)
    stats.looked_up, stats.sample_rate = len(unknown), p
    counted = weight > 0
    stats.resolved_bytes = int(nbytes[counted].sum())
    stats.untraced_bytes = int(nbytes[counted & (tb < 0)].sum())
    sites = _group(cache, tb[counted], nbytes[counted], weight[counted], p)
    stats.seconds = time.perf_counter() - t0
    return sites, stats


def _group(cache: OriginCache, tb: I64, nbytes: I64, weight: npt.NDArray[np.float64],
           p: float) -> list[SiteEstimate]:
    """Estimates per most-recent-frame site (untraced blocks in one bucket)."""
    key_of: dict[tuple[str, int], int] = {}
    lines: list[Frames] = []
    tb_key = []
    for frames in cache.tracebacks:
        line = frames[0] if frames else ("?", 0)
        if line not in key_of:
            key_of[line] = len(lines)
            lines.append(frames)
        tb_key.append(key_of[line])
    lut = np.array([*tb_key, len(lines)], dtype=np.int64)
    bucket = lut[tb]  # -1 (untraced) -> the last bucket
    nb = len(lines) + 1
    est = np.bincount(bucket, weights=nbytes * weight, minlength=nb)
    count = np.bincount(bucket, weights=weight, minlength=nb)
    var_w = np.where(weight > 1.0, (1.0 - p) * weight * weight, 0.0)  # only sampled blocks
    var = np.bincount(bucket, weights=var_w * nbytes.astype(np.float64) ** 2, minlength=nb)
    est_i = np.rint(est).astype(np.int64).tolist()
    count_i = np.rint(count).astype(np.int64).tolist()
    ci_i = np.rint(_Z95 * np.sqrt(var)).astype(np.int64).tolist()
    out = []
    for b in np.argsort(-est, kind="stable").tolist():
        if count[b] <= 0:
            continue
        if b == len(lines):
            out.append(SiteEstimate(UNTRACED, est_i[b], count_i[b], ci_i[b]))
        else:
            frames = lines[b]
            site = f"{frames[0][0]}:{frames[0][1]}"
            out.append(SiteEstimate(site, est_i[b], count_i[b], ci_i[b], frames))
    return out
