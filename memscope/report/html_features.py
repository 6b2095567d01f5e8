"""HTML sections for feature data that other modules put into the summary (COW, leaks, advice).

The keys read here are documented in docs/reports.md ("Slots for feature data"). Each section
is rendered only when its key is present, and tolerates missing or unexpected fields: known
fields get a purpose-built table, anything else is shown by `generic()`, escaped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from memscope.analysis.summary import ProcessSummary, Summary
from memscope.report.html_sections import (
    _bytes_cell,
    _cell,
    esc,
    generic,
    short_command,
    sparkline_svg,
    table,
)
from memscope.units import format_bytes

__all__ = ["Sparklines", "advice_section", "cow_section", "leak_section", "notes_section"]

#: process id -> (t, uss) arrays, for the leak sparklines
Sparklines = Callable[[int], tuple[np.ndarray, np.ndarray]]

_COW_FIELDS = ("inherited_bytes", "shared_bytes", "copied_bytes", "new_private_bytes",
               "swapped_bytes")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _by_type(summary_cow: dict[str, Any], procs: list[ProcessSummary]) -> list[dict[str, Any]]:
    rows = summary_cow.get("by_type")
    if isinstance(rows, list):
        return [r for r in rows if isinstance(r, dict)]
    merged: dict[str, dict[str, Any]] = {}
    for p in procs:
        for r in _dict(p.extra.get("cow")).get("by_type") or []:
            if not isinstance(r, dict):
                continue
            name = str(r.get("type", "?"))
            acc = merged.setdefault(name, {"type": name, "bytes": 0, "objects": 0})
            acc["bytes"] += _num(r.get("bytes")) or 0
            acc["objects"] += _num(r.get("objects")) or 0
    return sorted(merged.values(), key=lambda r: -r["bytes"])


def _by_cause(summary_cow: dict[str, Any], procs: list[ProcessSummary]) -> dict[str, float]:
    causes = summary_cow.get("by_cause")
    sources = [causes] if isinstance(causes, dict) else [
        _dict(p.extra.get("cow")).get("by_cause") for p in procs]
    merged: dict[str, float] = {}
    for src in sources:
        for k, v in _dict(src).items():
            if _num(v) is not None:
                merged[str(k)] = merged.get(str(k), 0) + v
    return dict(sorted(merged.items(), key=lambda kv: -kv[1]))


def _share_rows(items: list[tuple[str, float, str]]) -> list[str]:
    """(label, bytes, extra cell html) with a bar of each one's share of the total."""
    total = sum(b for _, b, _ in items) or 1
    return [
        f"<tr>{_cell(label, label)}{_bytes_cell(b)}{extra}"
        f'<td data-v="{b / total:.6f}"><div class="share"><div style="width:'
        f'{b / total * 100:.1f}%"></div></div>{b / total:.0%}</td></tr>'
        for label, b, extra in items
    ]


def cow_section(s: Summary) -> str | None:
    summary_cow = _dict(s.extra.get("cow"))
    procs = [p for p in s.processes if isinstance(p.extra.get("cow"), dict)]
    if not summary_cow and not procs:
        return None
    parts = ["<h2>Copy-on-write</h2>"]
    if procs:
        rows = []
        for p in sorted(procs, key=lambda p: -(_num(p.extra["cow"].get("copied_bytes")) or 0)):
            cow = p.extra["cow"]
            inherited = _num(cow.get("inherited_bytes"))
            copied = _num(cow.get("copied_bytes"))
            frac = copied / inherited if copied is not None and inherited else None
            rows.append(
                "<tr>" + _cell(str(p.pid), p.pid, "num") + _cell(short_command(p, 50))
                + _cell(str(cow.get("mode", "-")))
                + "".join(_bytes_cell(_num(cow.get(k))) for k in _COW_FIELDS)
                + _cell("-" if frac is None else f"{frac:.1%}", frac or 0, "num")
                + _cell(str(cow.get("target", "")))
                + "</tr>"
            )
        cols = [("pid", "num"), ("command", "text"), ("mode", "text"), ("inherited", "num"),
                ("still shared", "num"), ("copied", "num"), ("new private", "num"),
                ("swapped", "num"), ("copied %", "num"), ("attribution", "text")]
        parts.append("<h3>Per process</h3>" + table(cols, rows))
    types = _by_type(summary_cow, procs)
    if types:
        items = [(str(r.get("type", "?")), _num(r.get("bytes")) or 0,
                  _cell(str(r.get("objects", "-")), _num(r.get("objects")) or 0, "num"))
                 for r in types]
        summed = not isinstance(summary_cow.get("by_type"), list) and len(procs) > 1
        head = (f"Types in copied pages, summed over {len(procs)} processes (an inherited object"
                " copied by k workers counts k times)" if summed else "Types in copied pages")
        parts.append(f"<h3>{esc(head)}</h3>" + table(
            [("type", "text"), ("bytes", "num"),
             ("objects (Σ processes)" if summed else "objects", "num"), ("share", "num")],
            _share_rows(items)))
    causes = _by_cause(summary_cow, procs)
    if causes:
        parts.append("<h3>Causes</h3>" + table(
            [("cause", "text"), ("bytes", "num"), ("share", "num")],
            _share_rows([(k, v, "") for k, v in causes.items()])))
    if isinstance(summary_cow.get("sites"), list):
        parts.append(generic(summary_cow["sites"], "Allocation sites"))
    rest = {k: v for k, v in summary_cow.items() if k not in ("by_type", "by_cause", "sites")}
    if rest:
        parts.append(generic(rest, "Details"))
    return f'<section id="cow">{"".join(parts)}</section>'


def leak_section(s: Summary, spark: Sparklines) -> str | None:
    summary_leak = s.extra.get("leak")
    procs = [p for p in s.processes if isinstance(p.extra.get("leak"), dict)]
    if summary_leak is None and not procs:
        return None
    parts = ["<h2>Leaks</h2>"]
    if summary_leak is not None:
        parts.append(generic(summary_leak))
    if procs:
        keys: list[str] = []
        for p in procs:
            keys.extend(k for k in p.extra["leak"] if k not in keys and k not in ("verdict",))
        keys = [k for k in keys
                if not any(isinstance(q.extra["leak"].get(k), (dict, list)) for q in procs)]
        rows = []
        for p in procs:
            leak = p.extra["leak"]
            verdict = str(leak.get("verdict", "-"))
            cells = [_cell(str(p.pid), p.pid, "num"), _cell(short_command(p, 50)),
                     _cell(verdict, verdict, f"verdict {_verdict_class(verdict)}")]
            for k in keys:
                v = leak.get(k)
                if _num(v) is not None and ("slope" in k or "bytes" in k):
                    suffix = "/s" if k.endswith("_s") or "slope" in k else ""
                    cells.append(_cell(format_bytes(v) + suffix, v, "num"))
                else:
                    cells.append(_cell("-" if v is None else str(v),
                                       v if _num(v) is not None else str(v), "num"))
            t, uss = spark(p.id)
            cells.append(f"<td>{sparkline_svg(t, uss)}</td>")
            rows.append(f"<tr>{''.join(cells)}</tr>")
        cols = [("pid", "num"), ("command", "text"), ("verdict", "text"),
                *[(k.replace("_", " "), "num") for k in keys], ("USS trend", "text")]
        parts.append(table(cols, rows))
    return f'<section id="leak">{"".join(parts)}</section>'


def _verdict_class(verdict: str) -> str:
    v = verdict.lower()
    if any(w in v for w in ("leak", "grow", "fail")):
        return "bad"
    return "good" if any(w in v for w in ("ok", "stable", "flat", "none")) else ""


def advice_section(s: Summary) -> str | None:
    advice = s.extra.get("advice")
    if advice is None:
        return None
    items = advice if isinstance(advice, list) else [advice]
    out = []
    for item in items:
        if isinstance(item, dict):
            title = item.get("title") or item.get("fix") or item.get("kind") or "advice"
            text = item.get("text") or item.get("detail") or item.get("message") or ""
            snippet = item.get("snippet")  # code for the detected framework, as printed
            rest = {k: v for k, v in item.items()
                    if k not in ("title", "fix", "kind", "text", "detail", "message", "snippet")}
            code = f'<pre class="snippet">{esc(snippet)}</pre>' if snippet else ""
            out.append(f'<div class="advice"><b>{esc(title)}</b><p>{esc(text)}</p>'
                       f"{code}{generic(rest) if rest else ''}</div>")
        else:
            out.append(f'<div class="advice"><p>{esc(item)}</p></div>')
    return f'<section id="advice"><h2>Advice</h2>{"".join(out)}</section>'


def notes_section(s: Summary) -> str | None:
    """What features could not do, naming the affected workers (escaped)."""
    if not s.notes:
        return None
    items = "".join(f"<li>{esc(n.describe())}</li>" for n in s.notes)
    return f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>'
