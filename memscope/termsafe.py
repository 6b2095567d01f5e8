"""Neutralise target-controlled strings before they reach a terminal.

argv, comm, paths, type and module names come from the target: a process can put ESC
sequences there (OSC 52 clipboard writes, window titles, clear screen) or rich markup. Every
terminal renderer passes such strings through `clean` (or builds `safe_text`): C0 and C1
controls, DEL, bidi overrides and lone surrogates (undecodable bytes) become visible `\\xNN`
escapes, and text is never parsed as rich markup. JSON/HTML/CSV escape in their own ways.
"""

from __future__ import annotations

import re

from rich.text import Text

__all__ = ["clean", "clean_join", "safe_text"]

# C0 (incl. ESC, newline, tab), DEL, C1, bidi embeddings/overrides/isolates, line/para
# separators, and surrogates (bytes that were not UTF-8, decoded with surrogateescape).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape of one undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object) -> str:
    """`value` as text with every control character shown as an escape, never executed."""
    return _UNSAFE.sub(_escape, str(value))


def clean_join(parts: list[str] | tuple[str, ...], sep: str = " ") -> str:
    return sep.join(clean(p) for p in parts)


def safe_text(value: object, style: str = "") -> Text:
    """A rich Text (never markup) of the cleaned value."""
    return Text(clean(value), style=style)
