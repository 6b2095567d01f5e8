from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from memscope.inject import make_run_dir, remove_run_dir
from tests.conftest import TARGET_VERSIONS, target_python

HERE = os.path.dirname(os.path.abspath(__file__))


def pythons() -> list[object]:
    return [
        pytest.param(
            v,
            marks=pytest.mark.skipif(target_python(v) is None, reason=f"no CPython {v}"),
            id=f"py{v}",
        )
        for v in TARGET_VERSIONS
    ]


def target(name: str) -> str:
    return os.path.join(HERE, name)


@pytest.fixture
def run_dir() -> Iterator[str]:
    path = make_run_dir()
    yield path
    remove_run_dir(path)
