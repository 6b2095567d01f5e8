"""Allocation sites of many blocks within a budget: shared lookups, sampling, intervals.

Resolving a block's site is one lookup in the tracing parent's tracemalloc table, paid on
the parent's CPU (memscope/agent/_tracing.py). Millions of copied objects would cost
seconds of the parent's time per worker. Two things keep it bounded:

- workers forked from one parent copy the same addresses: `OriginCache` keeps every answer
  of one tracing origin, and each block is looked up once for all its workers;
- at most `budget` new lookups per call: when more blocks are unknown, a Poisson sample of
  *all* the worker's blocks at rate p = budget / blocks is counted (those not cached are
  looked up) and each sampled block stands for 1/p blocks. A site's bytes are then a
  Horvitz-Thompson estimate, sum(b_i / p), with variance sum((1 - p) / p^2 * b_i^2) over its
  sampled blocks; `ci_bytes` is the half-width of the 95% normal interval (0 where every
  block was looked up). The sample is *coordinated*: a block is in it when a hash of its
  address (salted per origin) is below p, so workers that copied the same blocks draw the
  same sample and the second worker's lookups are answered by the first one's (a random
  sample per worker would cost `budget` new lookups for every worker);
- `seconds`: a time bound on the lookups (see estimate_sites);
- `page_rate` < 1: the caller parsed only a coordinated sample of the worker's copied pages
  (`sample_pages`, each page kept with probability page_rate): every estimate is scaled by
  1/page_rate and the interval adds the between-pages variance (blocks of one page are
  sampled together).

Blocks of an origin that the origin did not trace (allocated before tracing started, or
freed since) count as UNTRACED, like any site.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["OriginCache", "ResolutionStats", "SiteEstimate", "estimate_sites", "hash_unit",
           "sample_pages"]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
Frames = tuple[tuple[str, int], ...]
# resolve(addresses) -> (tracebacks, per address: index into them or -1 untraced)
Resolver = Callable[[U64], tuple[list[Frames], I64]]
UNTRACED = "<untraced>"
_Z95 = 1.959964
_PAGE = 4096
_FIRST_CHUNK = 2_000  # lookups of a time-bounded resolution's first request
_MIN_CHUNK = 200  # a time-bounded resolution stops when less than this fits in the time left


def hash_unit(values: U64, salt: int = 0) -> npt.NDArray[np.float64]:
    """A uniform number in [0, 1) per value, a fixed function of (value, salt) (splitmix64):
    the same address gets the same number in every worker, so samples drawn by thresholding
    it coincide."""
    with np.errstate(over="ignore"):
        x = np.asarray(values, dtype=np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return np.asarray((x >> np.uint64(11)).astype(np.float64) / float(1 << 53))


def sample_pages(pages: U64, max_pages: int) -> tuple[U64, float]:
    """At most about `max_pages` of `pages`, chosen by a hash of each page's address (the
    same pages in every worker), and the share of them kept (1.0: all). Estimates scale by
    the realised share, not the nominal threshold: the copied total is then exact (a ratio
    estimator), whatever the number of pages the hash happened to keep."""
    if max_pages <= 0 or len(pages) <= max_pages:
        return pages, 1.0
    kept = pages[hash_unit(pages) < max_pages / len(pages)]
    return kept, max(len(kept), 1) / len(pages)


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

    seconds: float = 0.0  # memscope wall time of the resolution (lookups, estimates)
    read_seconds: float = 0.0  # reading the worker's copied pages (set by the caller)
    parse_seconds: float = 0.0  # parsing their objects (set by the caller)
    blocks: int = 0
    looked_up: int = 0  # new lookups sent to the origin
    cached: int = 0  # blocks answered by earlier lookups (other workers, earlier scans)
    resolved_bytes: int = 0  # bytes of blocks with an exact answer (cached or looked up)
    sampled_bytes: int = 0  # bytes of blocks estimated from the sample (not looked up)
    untraced_bytes: int = 0  # bytes of looked-up blocks the origin had no trace for
    sample_rate: float = 1.0
    page_rate: float = 1.0  # share of the copied pages parsed (sample_pages)
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

    _pending: list[tuple[U64, I64]] = field(default_factory=list)

    def known(self, starts: U64) -> tuple[npt.NDArray[np.bool_], I64]:
        self._merge()
        if not len(self.addrs):
            return np.zeros(len(starts), dtype=np.bool_), np.full(len(starts), -1, np.int64)
        k = np.minimum(np.searchsorted(self.addrs, starts), len(self.addrs) - 1)
        hit = self.addrs[k] == starts
        return hit, np.where(hit, self.tb[k], -1)

    def add(self, starts: U64, tracebacks: list[Frames], index: I64) -> I64:
        """Record answers (index into `tracebacks`, -1 untraced); returns global ids."""
        local = np.array([self._id(tb) for tb in tracebacks] + [-1], dtype=np.int64)
        ids = local[index]  # -1 indexes the trailing -1
        # Sorted into `addrs` at the next `known`: one sort per resolution, not per request
        # (a sort of the whole cache per request cost more than the lookups past ~1M answers).
        self._pending.append((np.asarray(starts, dtype=np.uint64), ids))
        return ids

    def _merge(self) -> None:
        if not self._pending:
            return
        addrs = np.concatenate([self.addrs, *(a for a, _ in self._pending)])
        ids = np.concatenate([self.tb, *(i for _, i in self._pending)])
        self._pending.clear()
        order = np.argsort(addrs, kind="stable")
        self.addrs, self.tb = addrs[order], ids[order]

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
    page_rate: float = 1.0,
    seconds: float | None = None,
    chunk: int = 10_000,
) -> tuple[list[SiteEstimate], ResolutionStats]:
    """Sites of blocks at `starts` (unique) holding `nbytes` each, by most recent frame.

    `seed` salts the sample's hash: pass the same one (the origin) for every worker of an
    origin so that their samples coincide. `page_rate`: see the module docstring.
    `seconds`: lookups go in increasing hash order, each request sized (at most `chunk`) to
    end within this bound at the rate measured so far, and stop when too few fit in the time
    left; the sample is then every block hashed below the first one not looked up (a
    bottom-k sample: its rate is that hash), so a slow origin costs a wider interval, not a
    longer wait."""
    t0 = time.perf_counter()
    stats = ResolutionStats(blocks=len(starts), page_rate=page_rate)
    hit, tb = cache.known(starts)
    unknown = np.flatnonzero(~hit)
    u = hash_unit(starts, seed)
    # A rate over all the worker's blocks, not the unknown ones: a worker copying the blocks
    # an earlier one did finds its sample already looked up.
    p = 1.0 if len(unknown) <= budget or budget <= 0 else budget / len(starts)
    todo = unknown[u[unknown] < p]
    todo = todo[np.argsort(u[todo], kind="stable")]  # lowest hash first: any prefix is a sample
    done, asked_s = 0, 0.0
    while done < len(todo):
        size = chunk
        if seconds is not None and done:
            left = seconds - (time.perf_counter() - t0)
            per = asked_s / done  # seconds per lookup so far
            # The next request must end within the bound (a fixed 10,000-lookup request
            # overshot it by up to 0.6 s on a loaded machine): sized to 80% of the time left,
            # as request times vary (the origin's GIL is shared) and the estimates follow.
            size = min(chunk, int(0.8 * left / per) if per > 0 else chunk)
            if size < min(_MIN_CHUNK, len(todo) - done):
                p = float(u[todo[done]])  # every block hashed below it is known: the sample
                break
        elif seconds is not None:
            size = min(chunk, _FIRST_CHUNK)  # measures the lookup rate for the next ones
        part = todo[done : done + size]
        t_ask = time.perf_counter()
        tracebacks, index = resolve(starts[part])
        tb[part] = cache.add(starts[part], tracebacks, index)
        asked_s += time.perf_counter() - t_ask
        done += len(part)
    chosen = u < p
    weight = np.where(chosen, 1.0 / p, 0.0) if p < 1.0 else np.ones(len(starts))
    if p < 1.0:
        stats.sampled_bytes = int(nbytes[~chosen].sum())
        stats.cached = int((hit & chosen).sum())
    else:
        stats.cached = int(hit.sum())
    unknown = todo[:done]
    stats.looked_up, stats.sample_rate = len(unknown), p
    counted = weight > 0
    stats.resolved_bytes = int(nbytes[counted].sum())
    stats.untraced_bytes = int(nbytes[counted & (tb < 0)].sum())
    page = starts[counted] & ~np.uint64(_PAGE - 1) if page_rate < 1.0 else None
    sites = _group(cache, tb[counted], nbytes[counted], weight[counted], p, page_rate, page)
    stats.seconds = time.perf_counter() - t0
    return sites, stats


def _group(cache: OriginCache, tb: I64, nbytes: I64, weight: npt.NDArray[np.float64],
           p: float, page_rate: float = 1.0, page: U64 | None = None) -> list[SiteEstimate]:
    """Estimates per most-recent-frame site (untraced blocks in one bucket); with a page
    sample, `page` is each block's page (its start's) for the between-pages variance."""
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
    F64 = npt.NDArray[np.float64]
    est: F64 = np.bincount(bucket, weights=nbytes * weight, minlength=nb).astype(np.float64)
    count: F64 = np.bincount(bucket, weights=weight, minlength=nb).astype(np.float64)
    var_w = np.where(weight > 1.0, (1.0 - p) * weight * weight, 0.0)  # only sampled blocks
    var: F64 = np.bincount(bucket, weights=var_w * nbytes.astype(np.float64) ** 2,
                           minlength=nb).astype(np.float64)
    if page is not None and page_rate < 1.0:
        # Two stages: pages kept at page_rate, then blocks at p within them. Within-page
        # variance scaled by 1/page_rate^2, plus the between-pages term over each kept
        # page's estimated bytes per site, (1 - r) / r^2 * y_ps^2.
        var = var / page_rate**2
        y = nbytes * weight
        key = (page >> np.uint64(12)) * np.uint64(nb) + bucket.astype(np.uint64)
        uniq, inv = np.unique(key, return_inverse=True)
        y_ps = np.bincount(inv.reshape(-1), weights=y, minlength=len(uniq))
        var += np.bincount((uniq % np.uint64(nb)).astype(np.int64), minlength=nb,
                           weights=(1.0 - page_rate) * y_ps * y_ps) / page_rate**2
        est, count = est / page_rate, count / page_rate
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
