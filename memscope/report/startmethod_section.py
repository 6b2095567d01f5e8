"""Text section: says plainly when workers share nothing with the master (forkserver, spawn),
from `Summary.extra["start_methods"]` (memscope.startmethods)."""

from __future__ import annotations

from rich.text import Text

from memscope.analysis.summary import Summary

__all__ = ["start_method_section"]


def start_method_section(s: Summary) -> Text | None:
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
