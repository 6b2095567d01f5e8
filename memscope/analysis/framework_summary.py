"""Framework names and advice snippets: the "frameworks" feature's summary section
(memscope.frameworks recognizes; memscope.analysis.advice has the snippets; wired in
memscope.features).

Sets `ProcessSummary.extra["framework"]` (Recognized.to_json()) for recognized processes,
`Summary.extra["frameworks"]` (the frameworks found), and adds `snippet` to the advice items
that have one for a detected framework. Runs after the COW section (it reads its advice).
Also sets `Summary.extra["start_methods"]` and each worker's `made_by` (memscope.startmethods).
"""

from __future__ import annotations

from memscope.analysis.advice import add_snippets
from memscope.analysis.summary import Summary
from memscope.frameworks import recognize
from memscope.recording import Recording
from memscope.startmethods import start_methods

__all__ = ["add_frameworks"]


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
