"""The /proc parsers on fuzzed captured text: a typed record or a ProcfsError, nothing else."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memscope.procfs import (
    MapEntry,
    Mapping,
    ProcfsError,
    Rollup,
    Stat,
    Statm,
    Status,
    parse_maps,
    parse_smaps,
    parse_smaps_rollup,
    parse_stat,
    parse_statm,
    parse_status,
)
from tests.hardening._fuzz import FUZZ, save_counts

DATA = Path(__file__).resolve().parents[1] / "data" / "proc"

PARSERS: dict[str, tuple[Callable[[bytes], Any], type | None]] = {
    "stat": (parse_stat, Stat),
    "statm": (parse_statm, Statm),
    "status": (parse_status, Status),
    "smaps_rollup": (parse_smaps_rollup, Rollup),
    "maps": (parse_maps, None),  # list[MapEntry]
    "smaps": (parse_smaps, None),  # list[Mapping]
}
CAPTURED = {
    name: [p.read_bytes() for p in sorted(DATA.glob(f"*/{name}"))] for name in PARSERS
}
OUTCOMES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    save_counts("procfs", OUTCOMES)


_TYPES = {"int": int, "str": str, "int | None": (int, type(None))}


def _typed(record: object) -> None:
    for f in fields(record):  # type: ignore[arg-type]
        expected = _TYPES.get(str(f.type))
        if expected is not None:
            value = getattr(record, f.name)
            assert isinstance(value, expected), (f.name, value)


def _check(name: str, result: Any) -> None:
    kind = PARSERS[name][1]
    if kind is not None:
        assert isinstance(result, kind)
        _typed(result)
    elif name == "maps":
        assert all(isinstance(e, MapEntry) for e in result)
        for e in result:
            _typed(e)
            assert len(e.perms) == 4  # readable/writable/private index it
    else:
        assert all(isinstance(m, Mapping) for m in result)
        for m in result:
            _typed(m.entry)
            _typed(m.memory)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(PARSERS)))
    data = bytearray(draw(st.sampled_from(CAPTURED[name])))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice", "digit"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            data[at : at + draw(st.integers(0, 8))] = draw(st.sampled_from(
                [b"(", b")", b":", b" kB", b"-", b" ", b"\n", b"\0", b"\xff\xfe", b"-1",
                 b"9" * 40, b"9" * 5000, b"ffffffffffffffffffff"]))
        elif op == "digit" and data:
            digits = [i for i, c in enumerate(data) if 48 <= c <= 57]
            if digits:
                data[digits[at % len(digits)]] = draw(st.sampled_from(b"x-. \n"))
    return name, bytes(data)


@FUZZ
@given(mutated())
def test_parsers_return_typed_records_or_raise_procfs_errors(case: tuple[str, bytes]) -> None:
    name, data = case
    try:
        result = PARSERS[name][0](data)
    except ProcfsError as exc:
        OUTCOMES["procfs-error"] += 1
        message = str(exc)
    else:
        OUTCOMES["record"] += 1
        _check(name, result)
        return
    assert message.startswith(f"malformed /proc/PID/{name}")


def test_captured_text_parses_unchanged() -> None:
    for name, texts in CAPTURED.items():
        assert texts, name
        for data in texts:
            _check(name, PARSERS[name][0](data))
