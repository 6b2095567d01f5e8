"""GitHub Actions: `::error` annotations for broken rules, and the markdown table appended to
$GITHUB_STEP_SUMMARY. Active only when GITHUB_ACTIONS=true (as the runner sets it)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from memscope.check.evaluate import CheckReport
from memscope.check.output import render_markdown

__all__ = ["annotation_lines", "escape", "publish"]


def escape(text: str, *, prop: bool = False) -> str:
    """Workflow-command escaping (% CR LF always; also : and , in properties)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def annotation_lines(report: CheckReport) -> list[str]:
    lines = []
    for r in report.results:
        if r.verdict == "pass":
            continue
        title = f"memscope: {r.rule.text}" if r.verdict == "fail" else "memscope: cannot check"
        message = r.describe() + (f" (hint: {r.hint})" if r.hint else "")
        lines.append(f"::error title={escape(title, prop=True)}::{escape(message)}")
    return lines


def publish(report: CheckReport, out: TextIO, env: Mapping[str, str] = os.environ) -> bool:
    """Write annotations to `out` and the summary table to $GITHUB_STEP_SUMMARY if on Actions."""
    if env.get("GITHUB_ACTIONS") != "true":
        return False
    for line in annotation_lines(report):
        out.write(line + "\n")
    out.flush()
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        buf = io.StringIO()
        render_markdown(report, buf)
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(buf.getvalue() + "\n")
        except OSError as exc:  # a courtesy: the annotations and exit code still tell
            sys.stderr.write(f"memscope: warning: cannot append to {summary}: {exc.strerror}\n")
    return True
