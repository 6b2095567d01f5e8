"""`memscope diff`: two recordings (or two groups of repeats) side by side."""

from memscope.diff.compare import Diff, DiffRow, compare
from memscope.diff.source import load_figures

__all__ = ["Diff", "DiffRow", "compare", "load_figures"]
