"""The HTML report's static sections: header, process tree table, COW, leaks, advice.

Every string a target controls (command lines, names, paths, type names, whatever feature
modules put in `extra`) goes through `esc()`; attribute values too. Nothing here emits markup
taken from data. Sortable tables carry the raw value of a cell in `data-v`.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from memscope.analysis.summary import ProcessSummary, Summary
from memscope.frameworks import display_name
from memscope.units import format_bytes, format_duration, format_signed_bytes

__all__ = ["esc", "generic", "header", "process_table", "sparkline_svg", "tree_order"]


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(text: str, sort: object = None, cls: str = "") -> str:
    v = f' data-v="{esc(sort)}"' if sort is not None else ""
    c = f' class="{cls}"' if cls else ""
    return f"<td{c}{v}>{esc(text)}</td>"


def _bytes_cell(n: int | float | None) -> str:
    return _cell(format_bytes(n), -1 if n is None else n, "num")


def table(cols: list[tuple[str, str]], rows: Iterable[str], cls: str = "sortable") -> str:
    """cols: (label, kind) where kind 'num' right-aligns and sorts numerically."""
    head = "".join(
        f'<th data-kind="{esc(kind)}" class="{esc(kind)}">{esc(label)}</th>' for label, kind in cols
    )
    body = "".join(rows)
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def tree_order(processes: list[ProcessSummary]) -> list[tuple[ProcessSummary, int]]:
    """Depth-first from the root(s), children by start time: (process, depth)."""
    children: dict[int | None, list[ProcessSummary]] = {}
    ids = {p.id for p in processes}
    for p in processes:
        parent = p.parent_id if p.parent_id in ids else None
        children.setdefault(parent, []).append(p)
    out: list[tuple[ProcessSummary, int]] = []
    stack = [(p, 0) for p in reversed(sorted(children.get(None, []), key=lambda p: p.started_at))]
    while stack:
        p, depth = stack.pop()
        out.append((p, depth))
        kids = sorted(children.get(p.id, []), key=lambda c: c.started_at)
        stack.extend((c, depth + 1) for c in reversed(kids))
    return out


def short_command(p: ProcessSummary, width: int = 90) -> str:
    if not p.cmdline:
        return "?"
    cmd = " ".join([p.cmdline[0].rsplit("/", 1)[-1], *p.cmdline[1:]])
    return cmd if len(cmd) <= width else cmd[: width - 1] + "…"


def header(s: Summary) -> str:
    started = dt.datetime.fromtimestamp(s.started_at).strftime("%Y-%m-%d %H:%M:%S")
    t = s.totals
    ratio = f"{t.rss_over_pss:.2f}×" if t.rss_over_pss else "-"
    growth = [p.uss_growth for p in s.workers if p.uss_growth is not None]
    facts = [
        ("peak ΣPSS (true footprint)", format_bytes(t.peak_pss)),
        ("peak ΣRSS (naive sum)", format_bytes(t.peak_rss)),
        ("ΣRSS / ΣPSS", ratio),
        ("processes", f"{len(s.processes)} ({len(s.workers)} workers)"),
        ("largest worker USS growth", format_signed_bytes(max(growth)) if growth else "-"),
        ("duration", format_duration(s.duration_s)),
    ]
    cards = "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>'
        for k, v in facts
    )
    status = "" if s.exit_code is None else f", exit status {s.exit_code}"
    return (
        f'<h1>memscope {esc(s.mode)}: <span class="cmd">{esc(" ".join(s.command) or "?")}</span>'
        f"</h1><p class=\"sub\">started {esc(started)}{esc(status)} · sampler:"
        f" {esc(s.sampler.describe())} · recording {esc(s.path)}</p>"
        f'<div class="cards">{cards}</div>'
    )


def _copied(p: ProcessSummary) -> int | float | None:
    cow = p.extra.get("cow")
    value = cow.get("copied_bytes") if isinstance(cow, dict) else None
    return value if isinstance(value, int | float) else None


def process_table(s: Summary) -> str:
    span = max(s.duration_s, 1e-9)
    has_cow = any(_copied(p) is not None for p in s.processes)
    cols = [("show", "toggle"), ("pid", "num"), ("role", "text"), ("command", "text"),
            ("python", "text"), ("lifetime", "num"), ("exit", "num"), ("peak RSS", "num"),
            ("peak PSS", "num"), ("peak USS", "num"), ("last USS", "num"),
            ("USS growth", "num")]
    if has_cow:
        cols.append(("copied", "num"))
    rows = []
    for order, (p, depth) in enumerate(tree_order(s.processes)):
        start = (p.started_at - s.started_at) / span * 100
        end = ((p.exited_at if p.exited_at is not None else s.ended_at) - s.started_at) / span
        width = max(end * 100 - start, 0.5)
        life = p.lifetime(s.ended_at)
        bar = (f'<div class="life"><div class="bar {esc(p.role)}" style="margin-left:'
               f'{start:.2f}%;width:{width:.2f}%"></div></div>')
        exit_text = "alive at end" if p.exited_at is None else (
            "?" if p.exit_code is None else str(p.exit_code))
        bad = " bad" if p.exit_code not in (None, 0) else ""
        cells = [
            f'<td><input type="checkbox" class="toggle" data-id="{p.id}" checked'
            f' aria-label="show process {p.pid}"></td>',
            _cell(str(p.pid), p.pid, "num"),
            _cell(display_name(p), display_name(p)),
            f'<td data-v="{order}" title="{esc(" ".join(p.cmdline))}">'
            f'<span class="indent" style="padding-left:{depth * 1.2:.1f}em"></span>'
            f'<span class="cmd">{esc(short_command(p))}</span></td>',
            _cell(p.python_version or "-", p.python_version or ""),
            f'<td class="num" data-v="{life:.3f}">{bar}{esc(format_duration(life))}</td>',
            f'<td class="num{bad}" data-v="{-1 if p.exit_code is None else p.exit_code}">'
            f"{esc(exit_text)}</td>",
            _bytes_cell(p.peak.rss), _bytes_cell(p.peak.pss), _bytes_cell(p.peak.uss),
            _bytes_cell(p.last.uss),
            _cell(format_signed_bytes(p.uss_growth), p.uss_growth or 0, "num"),
        ]
        if has_cow:
            stale = p.extra.get("cow_stale")
            cells.append(_bytes_cell(_copied(p)) if not stale else (
                f'<td class="num stale" data-v="{_copied(p) or 0}" title="{esc(stale)}">'
                f'{esc(format_bytes(_copied(p)))} *</td>'))
        rows.append(f'<tr data-id="{p.id}" data-order="{order}">{"".join(cells)}</tr>')
    return table(cols, rows, "sortable procs")


def sparkline_svg(t: np.ndarray, v: np.ndarray, points: int = 48) -> str:
    """A 120x24 inline SVG polyline of v over t (NaN skipped); only numbers go into it."""
    ok = ~np.isnan(v)
    t, v = t[ok], v[ok]
    if v.size < 2:
        return ""
    idx = np.linspace(0, v.size - 1, min(points, v.size)).round().astype(int)
    tt, vv = t[idx], v[idx]
    span_t = float(tt[-1] - tt[0]) or 1.0
    lo, hi = float(vv.min()), float(vv.max())
    span_v = (hi - lo) or 1.0
    coords = " ".join(
        f"{(a - tt[0]) / span_t * 118 + 1:.1f},{23 - (b - lo) / span_v * 22:.1f}"
        for a, b in zip(tt.tolist(), vv.tolist(), strict=True)
    )
    return (f'<svg class="spark" width="120" height="24" viewBox="0 0 120 24">'
            f'<polyline points="{coords}"/></svg>')


def _is_bytes_key(key: str) -> bool:
    return key == "bytes" or key.endswith("_bytes") or key.endswith("bytes_per_s")


def _scalar(key: str, value: Any) -> tuple[str, object]:
    if isinstance(value, bool) or value is None:
        return ("-" if value is None else str(value).lower()), str(value)
    if isinstance(value, int | float) and _is_bytes_key(key):
        text = format_bytes(value) + ("/s" if key.endswith("per_s") else "")
        return text, value
    if isinstance(value, float):
        return f"{value:.4g}", value
    if isinstance(value, int):
        return str(value), value
    if isinstance(value, (list, dict)):
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        return text, text
    return str(value), str(value)


def generic(value: Any, title: str = "") -> str:
    """Any JSON-like value as escaped HTML: dict -> key/value list, list of dicts -> table."""
    head = f"<h3>{esc(title)}</h3>" if title else ""
    if isinstance(value, Mapping):
        scalars = {k: v for k, v in value.items() if not isinstance(v, (Mapping, list))
                   or (isinstance(v, list) and not any(isinstance(x, Mapping) for x in v))}
        items = "".join(
            f"<dt>{esc(k.replace('_', ' '))}</dt><dd>{esc(_scalar(str(k), v)[0])}</dd>"
            for k, v in scalars.items()
        )
        nested = "".join(generic(v, str(k).replace("_", " "))
                         for k, v in value.items() if k not in scalars)
        return head + (f'<dl class="kv">{items}</dl>' if items else "") + nested
    if isinstance(value, list):
        if value and all(isinstance(x, Mapping) for x in value):
            keys: list[str] = []
            for row in value:
                keys.extend(str(k) for k in row if str(k) not in keys)
            kinds = ["num" if all(isinstance(r.get(k), int | float) or r.get(k) is None
                                  for r in value) else "text" for k in keys]
            rows = []
            for row in value:
                cells = []
                for k, kind in zip(keys, kinds, strict=True):
                    text, sort = _scalar(k, row.get(k))
                    cells.append(_cell(text, sort, kind))
                rows.append(f"<tr>{''.join(cells)}</tr>")
            return head + table([(k.replace("_", " "), kind) for k, kind in zip(keys, kinds,
                                                                                strict=True)], rows)
        items = "".join(f"<li>{esc(_scalar('', x)[0])}</li>" for x in value)
        return head + f"<ul>{items}</ul>"
    return head + f"<p>{esc(_scalar('', value)[0])}</p>"
