"""Check reports for people (table), for scripts (JSON) and for pull requests (markdown)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from memscope.check.evaluate import CheckReport, Result
from memscope.outputs import json_text
from memscope.quantity import format_value
from memscope.termsafe import safe_text

__all__ = ["FORMATS", "render", "render_json", "render_markdown", "render_text", "to_json"]

_STYLE = {"pass": "green", "fail": "bold red", "error": "bold yellow"}
_WORD = {"pass": "pass", "fail": "FAIL", "error": "ERROR"}


def _measured(r: Result) -> str:
    if r.verdict == "error":
        return "-"
    text = format_value(r.measured, r.dimension)
    if len(r.runs) > 1:
        text += " (median of " + ", ".join(format_value(v, r.dimension) for v in r.runs) + ")"
    return text


def _where(r: Result) -> str:
    if r.verdict == "error":
        return r.message + (f" ({r.hint})" if r.hint else "")
    return (r.process or "tree") + (f"; {r.message}" if r.message else "")


def _counts(report: CheckReport) -> str:
    n = len(report.results)
    parts = [f"{n - len(report.failed) - len(report.errors)} of {n} rules hold"]
    if report.failed:
        parts.append(f"{len(report.failed)} broken")
    if report.errors:
        parts.append(f"{len(report.errors)} could not be checked")
    return ", ".join(parts)


def render_text(report: CheckReport, out: TextIO) -> None:
    table = Table(title="memscope check", title_justify="left")
    for column in ("rule", "measured", "limit", "verdict", "process"):
        table.add_column(column, overflow="fold")
    for r in report.results:
        table.add_row(
            safe_text(r.rule.text), _measured(r), format_value(r.limit, r.dimension),
            Text(_WORD[r.verdict], style=_STYLE[r.verdict]), safe_text(_where(r)),
        )
    console = Console(file=out, width=max(100, Console(file=out).width))
    console.print(table)
    console.print(_counts(report), highlight=False)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: CheckReport, out: TextIO) -> None:
    icon = {"pass": "✅ pass", "fail": "❌ **FAIL**", "error": "⚠️ **ERROR**"}
    out.write("### memscope check\n\n")
    out.write("| rule | measured | limit | verdict | process |\n|---|---|---|---|---|\n")
    for r in report.results:
        cells = (
            f"`{r.rule.text}`", _measured(r), format_value(r.limit, r.dimension),
            icon[r.verdict], _where(r),
        )
        out.write("| " + " | ".join(_md(c) for c in cells) + " |\n")
    out.write(f"\n{_counts(report)}.\n")


def to_json(report: CheckReport) -> dict[str, Any]:
    return {
        "memscope_check": 1,
        "exit_code": report.exit_code,
        "recordings": report.recordings,
        "baseline": report.baseline,
        "passed": len(report.results) - len(report.failed) - len(report.errors),
        "failed": len(report.failed),
        "errors": len(report.errors),
        "results": [
            {
                "rule": r.rule.text,
                "selector": r.rule.selector,
                "metric": r.rule.metric.name,
                "op": r.rule.op,
                "unit": r.dimension.value,
                "verdict": r.verdict,
                "measured": r.measured,
                "limit": r.limit,
                "runs": r.runs,
                "process": r.process,
                "message": r.message or None,
                "hint": r.hint,
            }
            for r in report.results
        ],
    }


def render_json(report: CheckReport, out: TextIO) -> None:
    out.write(json_text(to_json(report), indent=2))
    out.write("\n")


FORMATS: dict[str, Callable[[CheckReport, TextIO], None]] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
}


def render(report: CheckReport, fmt: str, out: TextIO) -> None:
    FORMATS[fmt](report, out)
