"""`memscope diff` output: text (rich), markdown, JSON (diff.schema.json) and one HTML page.

Every format shows the same rows: tree figures first (ΣPSS vs ΣRSS, copied bytes by type,
cause and site), then per role, then per matched process (ROLE[N]). A headline names the
types whose copying fell most, with the bytes saved. Target-controlled strings (type names,
sites) are escaped for each format: rich markup, markdown table syntax, HTML.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from memscope import __version__
from memscope.diff.compare import Diff, DiffRow
from memscope.diff.rules import Verdict
from memscope.units import format_bytes

__all__ = ["DIFF_SCHEMA_VERSION", "FORMATS", "diff_json", "headline"]

DIFF_SCHEMA_VERSION = 1
TOP_DETAIL = 12  # rows per copied.type / cause / site group, largest changes first


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return f"{format_bytes(v * 60)}/min" if unit == "bytes/s" else format_bytes(v)


def _change(r: DiffRow) -> str:
    sign = "+" if r.change > 0 else "-" if r.change < 0 else "±"
    return sign + _value(abs(r.change), r.unit)


def _relative(r: DiffRow) -> str:
    rel = r.relative
    if rel is None:
        return "new" if r.change > 0 else "-"
    return f"{rel * 100:+.1f}%"


def _verdict(r: DiffRow) -> str:
    if r.within_noise:
        return "noise"
    return "lower" if r.change < 0 else "higher"


def shown_rows(diff: Diff) -> tuple[list[DiffRow], int]:
    """(rows to show, rows hidden) for people: every tree and role row, but only the
    TOP_DETAIL largest changes of each copied.type/cause/site group, and matched processes
    (ROLE[N]) only where they changed beyond noise. The JSON keeps every row."""
    out: list[DiffRow] = []
    detail: dict[str, list[DiffRow]] = {}
    hidden = 0
    for r in diff.rows:
        if r.scope == "tree" and r.group.startswith("copied.") and r.group != "copied.total":
            detail.setdefault(r.group, []).append(r)
        elif "[" in r.scope and r.within_noise:
            hidden += 1
        else:
            out.append(r)
    tree = [r for r in out if r.scope == "tree"]
    for rows in detail.values():
        tree += sorted(rows, key=lambda r: -abs(r.change))[:TOP_DETAIL]
        hidden += max(0, len(rows) - TOP_DETAIL)
    return tree + [r for r in out if r.scope != "tree"], hidden


def headline(diff: Diff) -> list[str]:
    lines = []
    for r in diff.savings("copied.type.", 3):
        lines.append(f"copying of {r.metric[len('copied.type.'):]} fell by"
                     f" {format_bytes(-r.change)} ({_relative(r)}):"
                     f" {_value(r.before, r.unit)} -> {_value(r.after or 0.0, r.unit)}")
    total = next((r for r in diff.rows if r.key == "copied.total"), None)
    if total is not None:
        lines.append(f"copied in total: {_value(total.before, total.unit)} ->"
                     f" {_value(total.after, total.unit)} ({_change(total)}, {_relative(total)},"
                     f" {_verdict(total)})")
    return lines


def _cells(r: DiffRow) -> list[str]:
    return [r.scope, r.metric, _value(r.before, r.unit), _value(r.after, r.unit), _change(r),
            _relative(r), _verdict(r)]


HEADER = ["scope", "figure", "before", "after", "change", "relative", "verdict"]


def _sides(diff: Diff) -> str:
    return f"BEFORE {', '.join(diff.before)}  vs  AFTER {', '.join(diff.after)}"


def render_text(diff: Diff, verdicts: list[Verdict], out: TextIO) -> None:
    console = Console(file=out, width=140, highlight=False)
    console.print(escape(_sides(diff)))
    for line in headline(diff):
        console.print(escape(line))
    table = Table(*HEADER, title="memscope diff")
    rows, hidden = shown_rows(diff)
    for r in rows:
        style = "dim" if r.within_noise else "green" if r.change < 0 else "red"
        table.add_row(*(escape(c) for c in _cells(r)), style=style)
    console.print(table)
    if hidden:
        console.print(f"{hidden} more rows within noise or below the top {TOP_DETAIL}"
                      " (--format json has them all)")
    for v in verdicts:
        console.print(escape(v.describe()))


def _md(text: str) -> str:
    return (html.escape(text, quote=False).replace("|", "\\|").replace("`", "\\`")
            .replace("*", "\\*").replace("_", "\\_").replace("[", "\\[").replace("]", "\\]")
            .replace("\n", " "))


def render_markdown(diff: Diff, verdicts: list[Verdict], out: TextIO) -> None:
    out.write("## memscope diff\n\n")
    out.write(_md(_sides(diff)) + "\n\n")
    for line in headline(diff):
        out.write(f"- {_md(line)}\n")
    out.write("\n| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER) + "\n")
    rows, hidden = shown_rows(diff)
    for r in rows:
        out.write("| " + " | ".join(_md(c) for c in _cells(r)) + " |\n")
    if hidden:
        out.write(f"\n{hidden} more rows within noise or below the top {TOP_DETAIL}.\n")
    if verdicts:
        out.write("\n" + "".join(f"- {_md(v.describe())}\n" for v in verdicts))


def diff_json(diff: Diff, verdicts: list[Verdict]) -> dict[str, Any]:
    return {
        "schema_version": DIFF_SCHEMA_VERSION,
        "memscope_version": __version__,
        "before": diff.before,
        "after": diff.after,
        "headline": headline(diff),
        "rows": [
            {"key": r.key, "scope": r.scope, "metric": r.metric, "unit": r.unit,
             "before": r.before, "after": r.after, "change": r.change,
             "relative": r.relative, "before_spread": r.before_spread,
             "after_spread": r.after_spread, "within_noise": r.within_noise}
            for r in diff.rows
        ],
        "rules": [{"rule": v.rule.text, "key": v.rule.key,
                   "measured": v.measured if math.isfinite(v.measured) else None,
                   "relative": v.rule.relative, "failed": v.failed} for v in verdicts],
    }


def render_json(diff: Diff, verdicts: list[Verdict], out: TextIO) -> None:
    json.dump(diff_json(diff, verdicts), out, indent=2, allow_nan=False)
    out.write("\n")


_CSS = ("body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
        "td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}.noise{color:#888}"
        ".lower{color:#070}.higher{color:#b00}")


def render_html(diff: Diff, verdicts: list[Verdict], out: TextIO) -> None:
    e = html.escape
    out.write(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>memscope diff</title>"
              f"<style>{_CSS}</style></head><body><h1>memscope diff</h1><p>{e(_sides(diff))}</p>")
    out.write("<ul>" + "".join(f"<li>{e(line)}</li>" for line in headline(diff)) + "</ul>")
    out.write("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>")
    rows, hidden = shown_rows(diff)
    for r in rows:
        out.write(f"<tr class='{_verdict(r)}'>" + "".join(f"<td>{e(c)}</td>" for c in _cells(r))
                  + "</tr>")
    out.write("</table>")
    if hidden:
        out.write(f"<p>{hidden} more rows within noise or below the top {TOP_DETAIL}.</p>")
    if verdicts:
        out.write("<ul>" + "".join(f"<li>{e(v.describe())}</li>" for v in verdicts) + "</ul>")
    out.write("</body></html>\n")


FORMATS: dict[str, Callable[[Diff, list[Verdict], TextIO], None]] = {
    "text": render_text, "markdown": render_markdown, "json": render_json, "html": render_html,
}
