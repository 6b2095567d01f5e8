"""COW section of the text report (listed in memscope.report.text.SECTIONS).

Per worker (latest scan): when it was taken (marked "copying" if the worker was still copying
fast then), copied bytes and their share of the inherited memory, the peak over its scans and
the estimate since, new private bytes, the top types and causes; then the types copied across
workers and the advice, each item naming types, bytes and workers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from memscope.analysis.summary import ProcessSummary, Summary
from memscope.cow._model import REASON_HIDDEN
from memscope.termsafe import clean, safe_text
from memscope.units import format_bytes

__all__ = ["cow_section"]

_CAUSE_LABELS = {
    "refcount": "refcount",
    "gc": "GC header",
    "allocator": "allocator",
    "data": "data write",
    "transient_gc": "transient (GC objects)",
    "transient_refcount": "transient (refcount)",
    "write": "write",
    "transient": "transient",
    "unread": "unread",
}


def _top(mapping: dict[str, int], n: int, label: dict[str, str] | None = None) -> str:
    total = sum(mapping.values())
    ranked = sorted(mapping.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(
        f"{(label or {}).get(k, k)} {v / total:.0%}" for k, v in ranked if total and v
    )


def _fraction(p: ProcessSummary, frac: float | None) -> str:
    info = p.extra.get("framework")
    if isinstance(info, dict) and info.get("shares_inherited") is False:
        return "exec'd: shares nothing"  # spawned/helper: no pages inherited from its parent
    return "-" if frac is None else f"{frac:.1%}"


def _workers_table(s: Summary, rows: list[tuple[ProcessSummary, dict[str, Any]]]) -> Table:
    table = Table(title="Copy-on-write: latest scan per worker", title_justify="left")
    for col in ("pid", "scanned", "copied", "% of inherited", "peak", "estimate now",
                "new private"):
        table.add_column(col, justify="right" if col != "scanned" else "left", no_wrap=True)
    table.add_column("top types (share of copied)")
    table.add_column("causes")
    for p, cow in rows:
        when = dt.datetime.fromtimestamp(cow["scanned_at"]).strftime("%H:%M:%S")
        offset = cow["scanned_at"] - s.started_at
        frac = cow["copied_fraction"]
        types = {t["type"]: t["bytes"] for t in cow["by_type"]}
        copying = ", copying" if cow.get("copying") else ""
        table.add_row(
            str(p.pid),
            safe_text(f"{when} (+{offset:.1f}s, {cow['mode']}{copying})"),
            format_bytes(cow["copied_bytes"]),
            _fraction(p, frac),
            format_bytes(cow.get("peak_copied_bytes")),
            format_bytes(cow.get("estimated_copied_bytes")),
            format_bytes(cow["new_private_bytes"]),
            safe_text(_top(types, 3)),
            _top(cow["by_cause"], 3, _CAUSE_LABELS),
        )
    return table


def _types_table(rows: list[tuple[ProcessSummary, dict[str, Any]]]) -> Table | None:
    per_type: dict[str, list[int]] = {}
    causes: dict[str, dict[str, int]] = {}
    for _, cow in rows:
        for t in cow["by_type"]:
            acc = per_type.setdefault(t["type"], [0, 0])
            acc[0] += t["bytes"]
            acc[1] += t["objects"]
            for c, b in cow["by_type_cause"].get(t["type"], {}).items():
                causes.setdefault(t["type"], {})[c] = causes.get(t["type"], {}).get(c, 0) + b
    if not per_type:
        return None
    n = len(rows)
    title = "Types in copied pages" + (
        f" (summed over {n} workers: an inherited object copied by k workers counts k times)"
        if n > 1 else f" (pid {rows[0][0].pid})")
    table = Table(title=title, title_justify="left")
    for col in ("type", "copied", "objects" + (" (Σ workers)" if n > 1 else ""), "causes"):
        table.add_column(col, justify="right" if col.startswith(("copied", "objects")) else "left")
    for name, (nbytes, objects) in sorted(per_type.items(), key=lambda kv: -kv[1][0])[:10]:
        table.add_row(
            safe_text(name), format_bytes(nbytes), f"{objects:,}" if objects else "-",
            _top(causes.get(name, {}), 3, _CAUSE_LABELS),
        )
    return table


def _advice(s: Summary) -> Text | None:
    items = s.extra.get("advice") or []
    if not items:
        return None
    text = Text()
    text.append("COW advice\n", style="bold")
    for i, item in enumerate(items, 1):
        pids = ", ".join(str(p) for p in item["pids"][:8])
        more = "…" if len(item["pids"]) > 8 else ""
        workers = f" (workers {pids}{more})" if pids else ""
        text.append(f"  {i}. {clean(item['title'])}{workers}\n")
        text.append(f"     {clean(item['text'])}\n")
        if item.get("snippet"):  # code for the detected framework
            text.append("".join(f"       {clean(ln)}\n"
                                for ln in str(item["snippet"]).splitlines()))
    return text


def cow_section(s: Summary) -> RenderableType | None:
    rows = [(p, p.extra["cow"]) for p in s.processes if "cow" in p.extra]
    if not rows:
        return None
    rows.sort(key=lambda r: -r[1]["copied_bytes"])
    parts: list[RenderableType] = [_workers_table(s, rows)]
    if any(cow["mode"] == "exclusive-bit" for _, cow in rows):
        parts.append(Text(f"  mode exclusive-bit: {REASON_HIDDEN}, so a page counts as copied"
                          " when the worker maps it exclusively and the parent has one there"))
    targets = sorted({cow["target"] for _, cow in rows if cow["target"]})
    if targets:
        parts.append(safe_text("  target: " + "; ".join(targets)))
    types = _types_table(rows)
    if types is not None:
        parts.append(types)
    advice = _advice(s)
    if advice is not None:
        parts.append(advice)
    return Group(*parts)

