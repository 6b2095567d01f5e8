"""Framework names and advice snippets: the "frameworks" feature's summary section
(memscope.frameworks recognizes; memscope.analysis.advice has the snippets; wired in
memscope.features).

Sets `ProcessSummary.extra["framework"]` (Recognized.to_json()) for recognized processes,
`Summary.extra["frameworks"]` (the frameworks found), and adds `snippet` to the advice items
that have one for a detected framework. Runs after the COW section (it reads its advice).
Libraries a process mapped (memscope.libraries) go to `ProcessSummary.extra["libraries"]`;
when workers with COW scans map pandas, "pandas" is a framework found and the pandas-strings
advice (memscope.analysis.advice.advise_pandas) joins the advice, largest bytes first.
Also sets `Summary.extra["start_methods"]` and each worker's `made_by` (memscope.startmethods).
"""

from __future__ import annotations

from memscope.analysis.advice import add_snippets, advise_pandas
from memscope.analysis.cow_summary import advice_json
from memscope.analysis.summary import Summary
from memscope.frameworks import recognize
from memscope.libraries import read_libraries
from memscope.recording import Recording
from memscope.startmethods import start_methods

__all__ = ["add_frameworks"]


def add_frameworks(rec: Recording, summary: Summary) -> None:
    found = recognize(summary)
    for p in summary.processes:
        if p.id in found:
            p.extra["framework"] = found[p.id].to_json()
    names = {r.framework for r in found.values() if r.framework != "exec"}
    libraries = read_libraries(rec)
    for p in summary.processes:
        if p.id in libraries:
            p.extra["libraries"] = libraries[p.id]
    advice = summary.extra.get("advice")
    if summary.cow is not None and isinstance(advice, list):
        pandas = [cp.detail for pid, cp in summary.cow.processes.items()
                  if "pandas" in libraries.get(pid, ())]
        item = advise_pandas(pandas) if pandas else None
        if pandas:
            names.add("pandas")
        if item is not None:
            summary.cow.advice.append(item)
            summary.cow.advice.sort(key=lambda a: -a.bytes)
            advice.extend(advice_json([item]))
            advice.sort(key=lambda a: -int(a["bytes"]))
    summary.extra["frameworks"] = sorted(names)
    if isinstance(advice, list):
        add_snippets(advice, names)
    execd = frozenset(r[0] for r in rec.conn.execute("SELECT process_id FROM process_exec")
                      ) if rec.has_table("process_exec") else frozenset()
    summary.extra["start_methods"] = start_methods(summary, execd)
