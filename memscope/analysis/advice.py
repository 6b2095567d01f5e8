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
- pandas-strings (only for workers that map pandas: memscope.libraries): copied bytes of `str`
  objects, when they are at least a quarter of the copied bytes. A pandas object-dtype column
  holds one Python str per value, and every read of the column increfs them. Remedy:
  Arrow-backed string columns (`string[pyarrow]`, pandas 3's default `str`) or categoricals,
  which hold no Python object per value; the saving is those bytes (an upper bound: the
  interpreter's own strings are str too, about 1.3 MiB per worker, 16% of what a pandas +
  pyarrow worker copies with Arrow columns, hence the quarter).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memscope.cow._model import CowScan

__all__ = ["SCALAR_TYPES", "Advice", "add_snippets", "advise", "advise_pandas"]

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
_PANDAS_RECIPE = (
    "these str objects are the values of pandas object-dtype columns (df.dtypes == object) "
    "that workers read: each read increfs every value, copying its page. Store string "
    "columns Arrow-backed (dtype \"string[pyarrow]\", pandas 3's default `str` dtype when "
    "pyarrow is installed) or as categoricals when values repeat: the values then live in "
    "a few buffers with no Python object per value, and stay shared."
)
_PANDAS_SHARE = 0.25  # str share of the copied bytes that points at object columns


@dataclass(frozen=True)
class Advice:
    kind: str  # "gc-freeze", "compact-data", "data-writes", "allocator", "pandas-strings"
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


def advise_pandas(scans: Sequence[CowScan]) -> Advice | None:
    """The pandas-strings item for the latest scans of workers that map pandas, or None."""
    copied = sum(s.copied_bytes for s in scans)
    per_pid = {s.pid: sum(t.bytes for t in s.by_type if t.type == "str") for s in scans}
    strings = sum(per_pid.values())
    if strings < max(_MIN_BYTES, _PANDAS_SHARE * copied):
        return None
    big = sorted(p for p, n in per_pid.items() if n >= 1 << 18)
    return Advice(
        kind="pandas-strings",
        title=f"pandas string columns: up to {_mib(strings)} of str copied in workers; "
              "Arrow-backed or categorical columns would keep it shared",
        types=["str"],
        bytes=strings,
        pids=big or sorted(p for p, n in per_pid.items() if n > 0),
        recipe=_PANDAS_RECIPE,
    )


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
    ("pandas-strings", "pandas"): (
        "# where the parent builds the DataFrame, before the fork (Pool, --preload, Celery)\n"
        "import pandas as pd\n"
        "df = pd.read_csv(path, dtype_backend=\"pyarrow\")  # string columns Arrow-backed\n"
        "# or convert the object columns of a frame built otherwise:\n"
        "for col in df.columns[df.dtypes == object]:\n"
        "    df[col] = df[col].astype(\"string[pyarrow]\")  # or .astype(\"category\")"
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
