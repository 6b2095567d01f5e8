"""COW to sites: name the lines that allocated the objects in a worker's copied pages.

Every object in a copied page was allocated before the fork, by the tracing ancestor (the
process whose agent started tracemalloc; forked workers detach from tracing and remember it as
`origin_pid`), at the same virtual address. The heap parser gives allocator block starts, which
are exactly the pointers tracemalloc keys its traces by (for GC objects the PyGC_Head, on 3.11+
the pre-header words before it; for malloc'd blocks the user pointer). memscope sends those
addresses to the origin's agent, which looks each one up without touching the object.

Limitation: the origin answers with its *current* traces. A block the origin freed after the
fork and reused for another allocation reports the new allocation's site; a block it freed
reports `<untraced>`.

memscope's own agent allocates in the origin too (its channel, its threads). Blocks whose most
recent frame is in memscope's agent package are not a site of the user's: they are left out.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from memscope.cow._model import HeapMap, SiteBytes
from memscope.cow.site_estimate import UNTRACED, OriginCache, ResolutionStats, estimate_sites
from memscope.inject.channel import AgentClient
from memscope.inject.errors import AgentError

__all__ = [
    "UNTRACED",
    "Resolution",
    "SiteBytes",
    "bytes_in_pages",
    "heap_sites",
    "heap_sites_stats",
    "hold_origin",
    "is_agent_frame",
    "origin_pid",
    "resolve_addresses",
    "resolve_seconds",
    "sites_by_bytes",
    "sum_sites",
]

_CHUNK = 50000
_PAGE = 4096

Frames = list[tuple[str, int]]
Frames_ = tuple[tuple[str, int], ...]

_AGENT_DIR = os.path.dirname(os.path.abspath(__file__)).rsplit(os.sep, 1)[0] + "/agent/"


def is_agent_frame(filename: str) -> bool:
    """A frame of memscope's own agent (or its sitecustomize bootstrap) in a target."""
    return filename.startswith(_AGENT_DIR) or "/memscope/agent/" in filename


@dataclass
class Resolution:
    tracebacks: list[Frames]
    index: npt.NDArray[np.int64]  # per address: index into tracebacks, -1 untraced


def origin_pid(run_dir: str, pid: int, timeout: float = 5.0) -> int:
    """The pid whose agent holds the traces describing `pid`'s inherited heap."""
    with AgentClient.for_pid(run_dir, pid, timeout) as c:
        info = c.request("ping")
    tracing = info.get("tracing")
    if not isinstance(tracing, dict) or not isinstance(tracing.get("origin_pid"), int):
        raise AgentError(f"agent of pid {pid} sent no tracing origin")
    if tracing["origin_pid"] <= 0:
        raise AgentError(f"pid {pid} was not started with --trace-sites (no tracing origin)")
    return int(tracing["origin_pid"])


def hold_origin(run_dir: str, origin: int, seconds: float) -> None:
    """Ask the tracing origin's agent to stay reachable at its exit for `seconds` (0: release):
    memscope has read a worker's pages and still has to resolve them there (the root of a short
    run exits right after its workers, before their sites were resolved)."""
    with AgentClient.for_pid(run_dir, origin, timeout=5.0) as c:
        c.request("hold", seconds=seconds)


def _frames(raw: Any) -> Frames:
    if not isinstance(raw, list):
        raise AgentError("malformed traceback from agent")
    out: Frames = []
    for fr in raw:
        if (not isinstance(fr, list) or len(fr) != 2 or not isinstance(fr[0], str)
                or not isinstance(fr[1], int)):
            raise AgentError("malformed traceback frame from agent")
        out.append((fr[0], fr[1]))
    return out


def resolve_addresses(
    client: AgentClient, addrs: npt.NDArray[np.uint64], max_frames: int = 64, duty: float = 1.0
) -> Resolution:
    """Ask a tracing agent for the traceback of each block start, in chunks (`duty` < 1:
    the agent holds the target's GIL at most that share of the time)."""
    extra = {"duty": duty} if duty < 1.0 else {}
    tracebacks: list[Frames] = []
    seen: dict[tuple[tuple[str, int], ...], int] = {}
    index = np.full(len(addrs), -1, dtype=np.int64)
    for lo in range(0, len(addrs), _CHUNK):
        part = np.ascontiguousarray(addrs[lo : lo + _CHUNK], dtype="<u8")
        ans = client.request(
            "resolve",
            addrs_b64=base64.b64encode(part.tobytes()).decode("ascii"),
            max_frames=max_frames,
            **extra,
        )
        tbs = ans.get("tracebacks")
        local = _indexes(ans, len(part))
        if not isinstance(tbs, list):
            raise AgentError("malformed resolve answer from agent")
        remap = []
        for raw in tbs:
            key = tuple(_frames(raw))
            if key not in seen:
                seen[key] = len(tracebacks)
                tracebacks.append(list(key))
            remap.append(seen[key])
        if len(local) and (local.max() >= len(remap) or local.min() < -1):
            raise AgentError("resolve answer indexes a missing traceback")
        table = np.asarray([*remap, -1], dtype=np.int64)
        index[lo : lo + len(part)] = table[local]  # -1 maps to the trailing -1
    return Resolution(tracebacks, index)


def _indexes(ans: dict[str, Any], n: int) -> npt.NDArray[np.int64]:
    raw = ans.get("index_b64")
    if not isinstance(raw, str):
        raise AgentError("malformed resolve answer from agent: no index_b64")
    try:
        data = base64.b64decode(raw, validate=True)
    except ValueError:
        raise AgentError("malformed resolve answer from agent: bad base64") from None
    if len(data) != 4 * n:
        raise AgentError(f"resolve answer has {len(data) // 4} indexes for {n} addresses")
    return np.frombuffer(data, dtype="<i4").astype(np.int64)


def sites_by_bytes(
    nbytes: npt.NDArray[np.int64], res: Resolution, top: int = 20, by: str = "line"
) -> list[SiteBytes]:
    """Group bytes by allocation site: by="line" (most recent frame) or "traceback"."""
    keys: list[tuple[tuple[str, int], ...]] = []
    key_of_tb: list[int] = []
    key_index: dict[tuple[tuple[str, int], ...], int] = {}
    for tb in res.tracebacks:
        if tb and is_agent_frame(tb[0][0]):
            key_of_tb.append(-1)
            continue
        k = tuple(tb[:1]) if by == "line" else tuple(tb)
        if k not in key_index:
            key_index[k] = len(keys)
            keys.append(tuple(tb))
        key_of_tb.append(key_index[k])
    # untraced -> bucket len(keys); memscope's agent -> bucket len(keys) + 1 (dropped)
    lut = np.asarray([len(keys) + 1 if k < 0 else k for k in key_of_tb] + [len(keys)],
                     dtype=np.int64)
    bucket = lut[res.index]
    sizes = np.bincount(bucket, weights=nbytes, minlength=len(keys) + 2)
    counts = np.bincount(bucket, minlength=len(keys) + 2)
    out = []
    for b in np.argsort(-sizes, kind="stable"):
        if counts[b] == 0 or b == len(keys) + 1:
            continue
        if b == len(keys):
            out.append(SiteBytes(UNTRACED, int(sizes[b]), int(counts[b])))
        else:
            tb = keys[b]
            out.append(SiteBytes(f"{tb[0][0]}:{tb[0][1]}", int(sizes[b]), int(counts[b]), tb))
    return out[:top]


def bytes_in_pages(
    starts: npt.NDArray[np.uint64], sizes: npt.NDArray[np.int64], pages: npt.NDArray[np.uint64]
) -> npt.NDArray[np.int64]:
    """Bytes of each block [start, start+size) that lie inside the given 4 KiB pages."""
    pages = np.sort(pages.astype(np.uint64))
    if not len(pages):
        return np.zeros(len(starts), dtype=np.int64)

    def below(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        p = x & ~np.uint64(_PAGE - 1)
        k = np.searchsorted(pages, p)
        hit = (k < len(pages)) & (pages[np.minimum(k, len(pages) - 1)] == p)
        partial = np.where(hit, (x - p).astype(np.int64), 0)
        return np.asarray(k.astype(np.int64) * _PAGE + partial, dtype=np.int64)

    # Most blocks lie in one page: all their bytes count if that page is given (one search);
    # the few that span pages take the general count.
    mask = ~np.uint64(_PAGE - 1)
    first = starts & mask
    k = np.minimum(np.searchsorted(pages, first), len(pages) - 1)
    out = np.where(pages[k] == first, sizes.astype(np.int64), 0)
    ends = starts + sizes.astype(np.uint64)
    multi = np.flatnonzero(((ends - np.uint64(1)) & mask) != first)
    if len(multi):
        out[multi] = below(ends[multi]) - below(starts[multi])
    return out


def heap_sites(
    run_dir: str,
    pid: int,
    heap: HeapMap,
    pages: npt.NDArray[np.uint64],
    top: int = 20,
    max_frames: int = 64,
    origin: int | None = None,
) -> list[SiteBytes]:
    """Bytes of `pages` (e.g. the copied ones) by allocation site of the blocks in them.

    Resolution needs the tracing origin's agent only: pass `origin` (asked of the worker's
    agent before its pages were read) and the worker may exit meanwhile."""
    return heap_sites_stats(run_dir, pid, heap, pages, top, max_frames, origin)[0]


# Answers of each tracing origin, shared by all its workers and scans ({(run_dir, pid): ...}).
_CACHES: dict[tuple[str, int], OriginCache] = {}
LOOKUP_BUDGET = 200_000  # new lookups per worker; beyond, a sample (site_estimate)
# Copied pages parsed per worker for its sites; beyond, a coordinated sample of them
# (site_estimate.sample_pages): the pages must be read while the worker lives, and parsing
# millions of blocks took seconds per worker on a loaded machine, past the parent's exit.
PAGE_BUDGET = 2048
# memscope wall time per worker's sites: page read + parse + lookups. The lookups get what the
# read and parse left (at least MIN_RESOLVE_S) and then stop (a sample then; site_estimate).
SITES_S = 2.0
MIN_RESOLVE_S = 0.25
_AROUND_S = 0.15  # of SITES_S, for the work around the lookups (connect, byte counts, estimates)
HOLD_S = 30.0  # how long an origin waits at its exit for one worker's resolution (renewed)
# Share of the origin's GIL its agent may hold while resolving (1: no pause). At 1.0 the agent
# ran 44-48% of the lookup time and the parent's own work ran 70-88% slower while it answered
# (bench/bench_sites_scale.py, 10M objects); at 0.25 it ran 11-13% and the parent's work was
# up to 20% slower (goal: at most 20%; the agent's share excludes handoff waits), hence 0.2:
# fewer lookups in the same time bound (a wider interval), not a longer wait.
AGENT_DUTY = 0.2


def heap_sites_stats(
    run_dir: str,
    pid: int,
    heap: HeapMap,
    pages: npt.NDArray[np.uint64],
    top: int = 20,
    max_frames: int = 64,
    origin: int | None = None,
    page_rate: float = 1.0,
    seconds: float | None = None,
) -> tuple[list[SiteBytes], ResolutionStats]:
    """`heap_sites` and how they were resolved (timing, coverage; memscope.cow.site_estimate).

    Each block is looked up once per origin, whichever worker copied it; at most
    LOOKUP_BUDGET new lookups are made per call (a uniform sample beyond that, with 95%
    intervals in `ci_bytes`), the origin's agent holding its GIL at most AGENT_DUTY of the
    time. `pages` kept at `page_rate` (sample_pages): estimates scale by 1/page_rate.
    `seconds`: the lookups' time bound (default: all of SITES_S; see resolve_seconds)."""
    starts, size = heap.block_start, heap.block_size
    if len(starts) > 1 and not bool(np.all(starts[1:] > starts[:-1])):  # the parser's order
        starts, first = np.unique(starts, return_index=True)
        size = size[first]
    sizes = bytes_in_pages(starts, size.astype(np.int64), pages)
    if origin is None:
        origin = origin_pid(run_dir, pid)
    if len(_CACHES) >= 16 and (run_dir, origin) not in _CACHES:
        _CACHES.clear()
    cache = _CACHES.setdefault((run_dir, origin), OriginCache())
    with AgentClient.for_pid(run_dir, origin, timeout=30.0) as c:

        def resolve(addrs: npt.NDArray[np.uint64]) -> tuple[list[Frames_], npt.NDArray[np.int64]]:
            res = resolve_addresses(c, addrs, max_frames, AGENT_DUTY)
            return [tuple(tb) for tb in res.tracebacks], res.index

        found, stats = estimate_sites(starts, sizes, cache, resolve, LOOKUP_BUDGET,
                                      seed=origin, page_rate=page_rate,
                                      seconds=SITES_S if seconds is None else seconds)
    rows = [SiteBytes(e.site, e.bytes, e.objects, e.traceback, e.ci_bytes) for e in found]
    return rows[:top], stats


def resolve_seconds(spent: float) -> float:
    """The lookups' time bound for a worker whose pages took `spent` seconds to read and
    parse: what is left of SITES_S, at least MIN_RESOLVE_S (a loaded machine's parse can take
    the whole budget; a small sample still names the top sites)."""
    return max(MIN_RESOLVE_S, SITES_S - _AROUND_S - spent)


def sum_sites(per_worker: list[list[SiteBytes]], top: int = 20) -> list[SiteBytes]:
    """Sum per-worker site lists (rows with the same site add up)."""
    acc: dict[str, list[Any]] = {}
    for rows in per_worker:
        for r in rows:
            a = acc.setdefault(r.site, [0, 0, r.traceback])
            a[0] += r.bytes
            a[1] += r.objects
    out = [SiteBytes(s, b, n, tb) for s, (b, n, tb) in acc.items()]
    out.sort(key=lambda r: -r.bytes)
    return out[:top]
