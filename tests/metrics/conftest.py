from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ._support import Forker, Live


@pytest.fixture
def forker() -> Iterator[Forker]:
    tree = Forker()
    try:
        yield tree
    finally:
        tree.close()


@pytest.fixture
def live(forker: Forker, tmp_path: Path) -> Iterator[Live]:
    sampler = Live(forker.pid, tmp_path / "live.memscope")
    try:
        yield sampler
    finally:
        sampler.close()
