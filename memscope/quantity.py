"""Quantities in rules and options (check, diff, leak thresholds): bytes, byte rates, ratios
and counts (parsing and formatting).

Byte units: B; binary KiB/MiB/GiB/TiB (1024^n); SI kB/KB/MB/GB/TB (1000^n), as storage
vendors and pytest-memray's "24 MB" mean them. Rates are bytes per s, min or h ("1MiB/min").
Ratios are percentages ("10%"). Counts are plain integers. A value must carry the unit of its
metric's dimension (a bare number is accepted only for counts and for zero).
"""

from __future__ import annotations

import math
import re
from enum import Enum

from memscope.errors import UsageError
from memscope.units import format_bytes

__all__ = ["BYTE_UNITS", "TIME_UNITS", "Dimension", "format_value", "parse_value"]


class Dimension(Enum):
    BYTES = "bytes"
    RATE = "bytes/s"
    RATIO = "ratio"
    COUNT = "count"


BYTE_UNITS: dict[str, int] = {
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}
TIME_UNITS: dict[str, float] = {"s": 1.0, "min": 60.0, "h": 3600.0}

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_VALUE = re.compile(
    rf"^(?P<num>{_NUMBER})\s*(?P<unit>[A-Za-z%]*)\s*(?:/\s*(?P<per>[A-Za-z]+))?$"
)


def _dimension_name(dim: Dimension) -> str:
    return {
        Dimension.BYTES: "a size (e.g. 200MiB)",
        Dimension.RATE: "a rate (e.g. 1MiB/min)",
        Dimension.RATIO: "a percentage (e.g. 10%)",
        Dimension.COUNT: "a count (e.g. 4)",
    }[dim]


def parse_value(text: str, dim: Dimension, *, context: str = "") -> float:
    """Parse `text` as a value of dimension `dim`, in base units (bytes, bytes/s, fraction).

    Raises UsageError naming the wrong part (number, unit, or dimension).
    """
    where = f" in {context!r}" if context else ""
    match = _VALUE.match(text.strip())
    if match is None:
        raise UsageError(f"cannot read value {text!r}{where}: expected {_dimension_name(dim)}")
    number = float(match["num"])
    if not math.isfinite(number):
        raise UsageError(f"value {text!r}{where} is not a finite number")
    unit, per = match["unit"], match["per"]
    if per is not None and per not in TIME_UNITS:
        raise UsageError(
            f"unknown time unit {per!r}{where} (known: {', '.join(TIME_UNITS)})"
        )
    if unit and unit != "%" and unit not in BYTE_UNITS:
        raise UsageError(
            f"unknown unit {unit!r}{where} (known: {', '.join(BYTE_UNITS)}, %, and /s, /min, /h)"
        )
    given = (
        Dimension.RATIO if unit == "%"
        else Dimension.RATE if per is not None
        else Dimension.BYTES if unit
        else None
    )
    if given is None:  # a bare number
        if dim is Dimension.COUNT or number == 0:
            return number
        raise UsageError(f"value {text!r}{where} needs a unit: expected {_dimension_name(dim)}")
    if given is not dim:
        raise UsageError(
            f"value {text!r}{where} is {_dimension_name(given).split(' (')[0]},"
            f" but the metric needs {_dimension_name(dim)}"
        )
    if given is Dimension.RATIO:
        return number / 100.0
    scaled = number * BYTE_UNITS[unit]
    scaled = scaled / TIME_UNITS[per] if per is not None else scaled
    if not math.isfinite(scaled):  # 1e308TiB: finite as written, infinite in bytes
        raise UsageError(f"value {text!r}{where} is too large")
    return scaled


def format_value(value: float | None, dim: Dimension) -> str:
    """A measured or limit value for people, in the metric's dimension."""
    if value is None:
        return "-"
    if dim is Dimension.BYTES:
        return format_bytes(value)
    if dim is Dimension.RATE:
        per_min = value * 60
        return f"{format_bytes(per_min)}/min"
    if dim is Dimension.RATIO:
        return f"{value * 100:.1f}%"
    return f"{value:g}"
