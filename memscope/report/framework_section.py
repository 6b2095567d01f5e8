"""Framework names and advice snippets in the summary; importing this module registers the
summary extension (memscope.frameworks recognizes; memscope.analysis.advice has the snippets).

Sets `ProcessSummary.extra["framework"]` (Recognized.to_json()) for recognized processes,
`Summary.extra["frameworks"]` (the frameworks found), and adds `snippet` to the advice items
that have one for a detected framework. Runs after the COW extension (it reads its advice).
"""

from __future__ import annotations

from memscope.analysis.advice import add_snippets
from memscope.analysis.summary import SUMMARY_EXTENSIONS, Summary
from memscope.frameworks import recognize
from memscope.recording import Recording

__all__ = ["add_frameworks"]


def add_frameworks(_rec: Recording, summary: Summary) -> None:
    found = recognize(summary)
    for p in summary.processes:
        if p.id in found:
            p.extra["framework"] = found[p.id].to_json()
    names = sorted({r.framework for r in found.values() if r.framework != "exec"})
    summary.extra["frameworks"] = names
    advice = summary.extra.get("advice")
    if isinstance(advice, list):
        add_snippets(advice, names)


if add_frameworks not in SUMMARY_EXTENSIONS:
    SUMMARY_EXTENSIONS.append(add_frameworks)
