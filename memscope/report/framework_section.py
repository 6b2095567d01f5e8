"""Framework names and advice snippets in the summary; importing this module registers the
summary extension (memscope.frameworks recognizes; memscope.analysis.advice has the snippets).

Sets `ProcessSummary.extra["framework"]` (Recognized.to_json()) for recognized processes,
`Summary.extra["frameworks"]` (the frameworks found), and adds `snippet` to the advice items
that have one for a detected framework. Runs after the COW extension (it reads its advice).
"""

from __future__ import annotations

from rich.text import Text

from memscope.analysis.advice import add_snippets
from memscope.analysis.summary import SUMMARY_EXTENSIONS, Summary
from memscope.frameworks import recognize
from memscope.recording import Recording
from memscope.report.text import TEXT_SECTIONS
from memscope.startmethods import start_methods

__all__ = ["add_frameworks", "start_method_section"]


def add_frameworks(rec: Recording, summary: Summary) -> None:
    found = recognize(summary)
    for p in summary.processes:
        if p.id in found:
            p.extra["framework"] = found[p.id].to_json()
    names = sorted({r.framework for r in found.values() if r.framework != "exec"})
    summary.extra["frameworks"] = names
    advice = summary.extra.get("advice")
    if isinstance(advice, list):
        add_snippets(advice, names)
    execd = frozenset(r[0] for r in rec.conn.execute("SELECT process_id FROM process_exec")
                      ) if rec.has_table("process_exec") else frozenset()
    summary.extra["start_methods"] = start_methods(summary, execd)


def start_method_section(s: Summary) -> Text | None:
    """Says plainly when workers share nothing with the master (forkserver, spawn)."""
    info = s.extra.get("start_methods")
    notes = info.get("notes") if isinstance(info, dict) else None
    if not notes:
        return None
    text = Text()
    text.append("Start methods: workers that share nothing with the master\n", style="bold")
    for note in notes:
        pids = ", ".join(str(p) for p in note["pids"][:8])
        text.append(f"  {note['method']} (workers {pids}): {note['text']}\n")
    return text


if add_frameworks not in SUMMARY_EXTENSIONS:
    SUMMARY_EXTENSIONS.append(add_frameworks)
if start_method_section not in TEXT_SECTIONS:
    TEXT_SECTIONS.append(start_method_section)
