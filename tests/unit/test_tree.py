"""Tree tracking: roles, identity (pid, start time), births and deaths."""

from __future__ import annotations

import os
import shutil

from memscope.procfs import ProcFS
from memscope.tree import ProcessTree, python_version_of
from tests.conftest import CAPTURED_PROC

PARENT, CHILD, HOSTILE, GRANDCHILD = 14337, 14339, 14340, 14341


def test_discovers_roles_from_captured_tree() -> None:
    tree = ProcessTree(ProcFS(CAPTURED_PROC), PARENT)
    change = tree.refresh()
    roles = {m.pid: m.role for m in change.born}
    assert roles == {PARENT: "root", CHILD: "worker", HOSTILE: "worker", GRANDCHILD: "descendant"}
    assert change.died == []
    # parents are always reported before their children
    order = [m.pid for m in change.born]
    assert order.index(CHILD) < order.index(GRANDCHILD)
    assert tree.members[GRANDCHILD].parent_key == tree.members[CHILD].key


def test_death(tmp_path: os.PathLike[str]) -> None:
    root = os.path.join(str(tmp_path), "proc")
    shutil.copytree(CAPTURED_PROC, root, symlinks=True)
    tree = ProcessTree(ProcFS(root), PARENT, recheck_every=1)
    tree.refresh()
    # WHEN the grandchild exits
    shutil.rmtree(os.path.join(root, str(GRANDCHILD)))
    change = tree.refresh()
    assert [m.pid for m in change.died] == [GRANDCHILD]


def test_python_version_from_exe() -> None:
    procfs = ProcFS(CAPTURED_PROC)
    assert python_version_of(procfs, PARENT, procfs.exe(PARENT)) == "3.11.7"
    assert python_version_of(procfs, HOSTILE, procfs.exe(HOSTILE)) is None
