"""Advice from COW scans: which remedy addresses which copied bytes (pure functions).

Each rule reads the per-type x cause bytes of the latest scan of each worker and names the
types and the bytes the remedy addresses (summed over workers). Rules:

- gc-freeze: bytes copied by GC header writes ("gc") or transiently written on pages holding
  GC-tracked objects ("transient_gc"). Remedy: the gc.freeze() recipe from the Python docs.
- compact-data: refcount/transient writes on numbers and strings (int, float, str, ...) that
  dominate the copied bytes: such objects usually sit in large homogeneous containers, whose
  every read touches each element's refcount. Remedy: numpy/array, mmap, shared_memory.
- data-writes: words really written ("data"). Remedy: create that state after the fork, or
  share it explicitly (shared_memory/mmap) if workers must see each other's writes.
- allocator: inherited objects freed or pools reused in the worker ("allocator").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memscope.cow._model import CowScan

__all__ = ["SCALAR_TYPES", "Advice", "advise"]

SCALAR_TYPES = frozenset({"int", "float", "str", "bytes", "complex", "bool", "decimal.Decimal"})
_MiB = 1 << 20
_MIN_BYTES = 1 * _MiB  # below this a remedy is not worth a line
_MIN_SHARE = 0.05  # ... nor below this share of the copied bytes
_GC_RECIPE = (
    "call gc.disable() early in the parent (before preloading), gc.freeze() just before "
    "the fork, and gc.enable() in each child (e.g. gunicorn post_fork / Pool initializer): "
    "frozen objects are never traversed by the collector, so their GC headers stay shared. "
    "Refcount touches on the same pages are not prevented; re-scan to confirm."
)
_COMPACT_RECIPE = (
    "store the values in a numpy array or array.array (one buffer, no per-element refcount), "
    "or in an mmap'd file or multiprocessing.shared_memory block that workers read without "
    "touching per-object headers."
)
_DATA_RECIPE = (
    "these objects are really modified in the worker: create that state after the fork (per "
    "worker), or keep it in multiprocessing.shared_memory/mmap if workers must share it."
)
_ALLOC_RECIPE = (
    "the worker frees inherited objects or allocates into inherited pools (e.g. clearing a "
    "preloaded cache): keep preloaded structures immutable in workers, or build them after "
    "the fork."
)


@dataclass(frozen=True)
class Advice:
    kind: str  # "gc-freeze", "compact-data", "data-writes", "allocator"
    title: str
    types: list[str]  # the types the remedy addresses, largest first
    bytes: int  # copied bytes addressed, summed over `pids`
    pids: list[int]
    recipe: str


def _type_bytes(scans: Iterable[CowScan], causes: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for scan in scans:
        for type_name, by_cause in scan.by_type_cause.items():
            n = sum(by_cause.get(c, 0) for c in causes)
            if n:
                out[type_name] = out.get(type_name, 0) + n
    return out


# Rows that are not a type a user can act on: named only when nothing else is.
_GENERIC = ("buffer", "(unattributed)", "(other)")


def _top(per_type: dict[str, int], total: int, limit: int = 5) -> list[str]:
    ranked = sorted(per_type.items(), key=lambda kv: (kv[0] in _GENERIC, -kv[1]))
    return [t for t, n in ranked if total and n >= _MIN_SHARE * total][:limit]


def _pids(scans: Iterable[CowScan], types: Iterable[str], causes: Sequence[str]) -> list[int]:
    """Workers where the remedy addresses at least 256 KiB (else: any bytes at all)."""
    wanted = set(types)
    per_pid = {
        s.pid: sum(n for t, row in s.by_type_cause.items() if t in wanted
                   for c, n in row.items() if c in causes)
        for s in scans
    }
    big = sorted(p for p, n in per_pid.items() if n >= 1 << 18)
    return big or sorted(p for p, n in per_pid.items() if n > 0)


def _mib(n: int) -> str:
    return f"{n / _MiB:.1f} MiB"


def advise(scans: Sequence[CowScan]) -> list[Advice]:
    """Advice items for the latest scans of a set of workers, largest bytes first."""
    copied = sum(s.copied_bytes for s in scans)
    if copied == 0:
        return []
    floor = max(_MIN_BYTES, int(_MIN_SHARE * copied))
    items: list[Advice] = []

    def add(kind: str, causes: Sequence[str], recipe: str, title: str, only: frozenset[str] | None
            = None) -> None:
        per_type = _type_bytes(scans, causes)
        if only is not None:
            per_type = {t: n for t, n in per_type.items() if t in only}
        per_type.pop("(unattributed)", None)
        total = sum(per_type.values())
        if total < floor:
            return
        types = _top(per_type, total)
        # The remedy saves whole pages: every typed byte of the cause counts (buffers too).
        addressed = total
        items.append(
            Advice(
                kind=kind,
                title=title.format(types=", ".join(types), bytes=_mib(addressed)),
                types=types,
                bytes=addressed,
                pids=_pids(scans, per_type, causes),
                recipe=recipe,
            )
        )

    add(
        "gc-freeze",
        ("gc", "transient_gc"),
        _GC_RECIPE,
        "gc.freeze() before fork: {bytes} copied on pages of GC-tracked {types}",
    )
    add(
        "compact-data",
        ("refcount", "transient_refcount", "transient_gc"),
        _COMPACT_RECIPE,
        "numbers/strings in containers: {bytes} of {types} copied by refcount touches",
        only=SCALAR_TYPES,
    )
    add(
        "data-writes",
        ("data",),
        _DATA_RECIPE,
        "data writes: {bytes} of {types} modified in workers",
    )
    add(
        "allocator",
        ("allocator",),
        _ALLOC_RECIPE,
        "allocator writes: {bytes} on pages of {types} (inherited objects freed/reused)",
    )
    items.sort(key=lambda a: -a.bytes)
    return items


# Framework-specific ways to apply a remedy: (advice kind, framework) -> snippet.
_SNIPPETS = {
    ("gc-freeze", "gunicorn"): (
        "# gunicorn.conf.py (with --preload): freeze what the master built, before each fork\n"
        "import gc\n"
        "def pre_fork(server, worker):\n"
        "    gc.freeze()"
    ),
    ("gc-freeze", "celery"): (
        "# in the module that defines the Celery app\n"
        "import gc\n"
        "from celery.signals import worker_init, worker_process_init\n"
        "@worker_init.connect          # main process, before the prefork pool starts\n"
        "def _freeze_main(**_):\n"
        "    gc.freeze()\n"
        "@worker_process_init.connect  # each ForkPoolWorker-N, right after its fork\n"
        "def _freeze_child(**_):\n"
        "    gc.freeze()"
    ),
    ("gc-freeze", "uwsgi"): (
        "# with uWSGI's default preloading (no lazy-apps): freeze at the end of the app module\n"
        "import gc\n"
        "gc.freeze()"
    ),
}


def add_snippets(advice: list[dict[str, object]], frameworks: Iterable[str]) -> None:
    """Add `snippet` (code for the detected framework) to advice items that have one."""
    found = set(frameworks)
    for item in advice:
        for (kind, framework), snippet in _SNIPPETS.items():
            if item.get("kind") == kind and framework in found:
                item["snippet"] = snippet
                item["framework"] = framework
                break
