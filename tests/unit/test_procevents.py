"""The proc connector parser on captured datagrams (tests/data/capture_procevents.py)."""

from __future__ import annotations

import json
import os
import struct

import pytest

from memscope.procevents import EXEC, EXIT, FORK, parse_events
from memscope.procfs import ProcFS
from memscope.session import follow_births
from tests.conftest import DATA

CAPTURED = os.path.join(DATA, "procevents")


def datagrams(name: str) -> list[bytes]:
    with open(os.path.join(CAPTURED, name), "rb") as fh:
        raw = fh.read()
    out, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from("=I", raw, offset)
        out.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return out


def test_fork_exec_exit_of_a_captured_child() -> None:
    # GIVEN the datagrams the kernel sent while `sh -c 'exit 3'` ran
    with open(os.path.join(CAPTURED, "sh_exit3.json")) as fh:
        truth = json.load(fh)
    events = [e for d in datagrams("sh_exit3.bin") for e in parse_events(d)]
    child = [e for e in events if e.tgid == truth["child"]]
    # THEN the child's fork (from the capturing process), exec and exit are there, in order
    assert [e.what for e in child] == [FORK, EXEC, EXIT]
    fork, _, exit_ = child
    assert fork.parent_tgid == truth["parent"] and fork.is_process
    assert os.waitstatus_to_exitcode(exit_.exit_code) == truth["returncode"] == 3
    assert fork.timestamp_ns < exit_.timestamp_ns
    # AND every event of the capture carries a kernel timestamp
    assert all(e.timestamp_ns > 0 for e in events)


def test_truncated_and_foreign_datagrams_give_nothing() -> None:
    data = datagrams("sh_exit3.bin")[0]
    assert parse_events(data[:10]) == []
    assert parse_events(data[:-8]) == []  # a message cut short is dropped, not misread
    assert parse_events(b"") == []


def test_without_root_births_fall_back_to_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a process that is not root
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    # THEN no event follower is started, and the reason is what the recording will say
    follower, how = follow_births(ProcFS())
    assert follower is None
    assert how == "scan (proc connector unavailable: needs root)"
