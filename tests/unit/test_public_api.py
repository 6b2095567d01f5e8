"""Every module's `__all__` names things that exist, and memscope's modules all import."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import memscope

# Code that runs inside targets is imported there, by file path (docs/agent.md).
_SKIP = ("memscope.agent._bootstrap",)

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(memscope.__path__, "memscope.")
    if not m.name.startswith(_SKIP) and not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_honest(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names missing attributes"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"


def test_modules_were_found() -> None:
    assert "memscope.procfs._parsers" in MODULES
    assert "memscope.cow.scan" in MODULES
    assert len(MODULES) > 50
