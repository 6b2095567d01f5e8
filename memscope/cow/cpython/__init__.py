"""CPython targets: detection of version and build, and per-version memory layouts."""

from memscope.cow.cpython._layout import Layout, layout_for
from memscope.cow.cpython._target import SUPPORTED_RANGE, Target, detect_target

__all__ = ["SUPPORTED_RANGE", "Layout", "Target", "detect_target", "layout_for"]
