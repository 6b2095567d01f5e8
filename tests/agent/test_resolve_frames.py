"""The agent's resolve: memscope's own frames never name a site; the duty cycle yields.

Runs the agent's Tracer in this process (real tracemalloc): a list allocated by agent code
called from here is traced with the agent's frame on top; resolve must cut it and name this
file's line instead.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from memscope.agent import _tracing
from memscope.agent._tracing import Tracer


@pytest.fixture
def tracer() -> Iterator[Tracer]:
    t = Tracer()
    t.start(8, os.getpid())
    try:
        yield t
    finally:
        t.stop()


def test_agent_frames_are_cut_from_sites(tracer: Tracer) -> None:
    # Lists allocated by agent code (past the list free list, so freshly malloc'd).
    made = [_tracing._host_frames((("x.py", 1),), 4) for _ in range(1000)][-1]
    raw = tracemalloc.get_object_traceback(made)
    assert raw is not None
    assert raw[-1].filename.startswith(_tracing._AGENT_DIR)  # most recent: the agent's
    block = id(made) - 16  # the GC head precedes a list (no pre-header for list)
    out = tracer.resolve([block], 8)
    (tb,) = out["tracebacks"]
    assert out["index"] == [0]
    assert all(not f.startswith(_tracing._AGENT_DIR) for f, _ in tb)
    assert tb[0][0] == __file__


def test_blocks_only_the_agent_allocated_are_untraced(tracer: Tracer) -> None:
    agent_file = os.path.join(_tracing._AGENT_DIR, "runtime.py")
    assert _tracing._host_frames(((agent_file, 3),), 4) == []
    # A real traced block whose every frame counts as the agent's (the agent's directory
    # widened to "/" for the lookup): resolve answers untraced, with no traceback.
    made = [_tracing._host_frames((("x.py", 1),), 4) for _ in range(1000)][-1]
    saved = _tracing._AGENT_DIR
    try:
        _tracing._AGENT_DIR = "/"  # every frame counts as the agent's
        out = tracer.resolve([id(made) - 16], 8)
    finally:
        _tracing._AGENT_DIR = saved
    assert out == {"tracebacks": [], "index": [-1]}


def test_duty_cycle_sleeps_in_proportion(tracer: Tracer) -> None:
    addrs = [id(object()) for _ in range(20_000)]
    t0 = time.perf_counter()
    tracer.resolve(addrs, 1)
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    tracer.resolve(addrs, 1, duty=0.25)
    throttled = time.perf_counter() - t0
    assert throttled >= 2.0 * full  # 1/0.25 = 4x the lookup time, minus noise
