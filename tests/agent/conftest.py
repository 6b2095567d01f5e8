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


DEBIAN_CPYTHON = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cpython-debian"
)


def any_python(version: str) -> str | None:
    """pyenv's CPython `version`, else the Debian build that shared/tools/cpython-from-debian
    installs (3.14, 3.15); None when neither is there. "system" is /usr/bin/python3 (Debian's
    statically linked interpreter: the executable is the interpreter image)."""
    if version == "system":
        return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else None
    found = target_python(version)
    if found is not None:
        return found
    path = os.path.join(DEBIAN_CPYTHON, version, "usr", "bin", f"python{version}")
    return path if os.access(path, os.X_OK) else None


def matrix_pythons(versions: list[str]) -> list[object]:
    return [
        pytest.param(
            v,
            marks=pytest.mark.skipif(any_python(v) is None, reason=f"no CPython {v}"),
            id=f"py{v}",
        )
        for v in versions
    ]
