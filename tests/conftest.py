from __future__ import annotations

import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")
CAPTURED_PROC = os.path.join(DATA, "proc")
FIXTURES = os.path.join(REPO, "fixtures")

PYENV = "/root/.pyenv/versions"
TARGET_VERSIONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
# Installed by ../shared/tools/cpython-from-debian (see .ci/run), not by pyenv: the suites
# that cover them add them explicitly (the COW ground truth, the type sweep).
DEBIAN_VERSIONS = ["3.14", "3.15"]
ALL_VERSIONS = TARGET_VERSIONS + DEBIAN_VERSIONS


def _debian_python(version: str) -> str | None:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(cache, "cpython-debian", version, "usr", "bin", f"python{version}")
    return path if os.access(path, os.X_OK) else None


def target_python(version: str) -> str | None:
    """Path of the CPython `version` (major.minor), or None when not installed.

    pyenv's builds first; then Debian's build unpacked by cpython-from-debian (3.14+)."""
    if not os.path.isdir(PYENV):
        return _debian_python(version)
    for name in sorted(os.listdir(PYENV)):
        if name == version or name.startswith(version + "."):
            path = os.path.join(PYENV, name, "bin", "python3")
            if os.access(path, os.X_OK):
                return path
    return _debian_python(version)


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, f"{name}.py")


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def memscope_bin() -> str:
    path = shutil.which("memscope") or os.path.join(os.path.dirname(sys.executable), "memscope")
    assert os.path.exists(path), "memscope is not installed in this environment"
    return path
