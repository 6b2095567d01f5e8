"""Roles from the fork structure: which process is the master, which are its workers, and
which are only wrappers (shells, `uv run`, `poetry run`, `env`, entrypoint scripts) (pure).

Roles (the recording's `processes.role`):

- ``wrapper``: a process on the path from the root to the master whose only purpose is to
  run another program. It has a *lasting* child (alive, or lived >= LASTING_S or half the
  wrapper's own life) that it fork+exec'd, every lasting child it has is exec'd, they ran
  one after the other (never two at once), and none is a multiprocessing helper (fork
  server, resource tracker).
  Short helpers (`true`, `$(dirname "$0")`, a pyenv shim's lookups) do not count.
- ``root``: the command's own process when it is not a wrapper (it is then the master).
- ``master``: below a chain of wrappers, the first process that is not one: the
  root-equivalent, the process that forks the workers.
- ``worker``: a child of the master forked from it (not exec'd); a lasting child it
  fork+exec'd (multiprocessing's spawn, ``subprocess.Popen``: such a worker shares nothing
  with the master); or a child forked by the master's multiprocessing fork server.
- ``descendant``: everything else (a worker's children, the fork server and resource
  tracker themselves, a wrapper's short helpers, the master's short exec'd helpers).

A child is *exec'd* when the kernel reported an exec for it, or its executable or command
line differs from its parent's (a process title set in place with setproctitle, such as
"gunicorn: worker [app]", is not an exec). Roles are revised as the tree evolves; the
recording keeps each process's last role.

Days of recycled workers must not grow the book: `forget_ended()` drops a process that has
ended, has no child left in the book, and whose parent can never be a wrapper of the program
it runs now (it already had a lasting child that was forked without exec, or a
multiprocessing helper, or two lasting children at once: `Node.no_wrap`). No later decision
reads such a node, so the roles decided with it and without it are the same; its last role
is in the recording. The root is never forgotten.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

__all__ = ["LASTING_S", "MAIN_ROLES", "ROLES", "Node", "RoleBook", "retitled"]

#: every role a recording may hold (files older than master/wrapper hold the first three)
ROLES = ("root", "worker", "descendant", "master", "wrapper")

LASTING_S = 1.0
MAIN_ROLES = ("root", "master")  # the root-equivalent: what `root.*` selects
_FORKSERVER = "multiprocessing.forkserver"
_HELPERS = (_FORKSERVER, "multiprocessing.resource_tracker")

Key = tuple[int, int]


def retitled(cmdline: list[str]) -> bool:
    """A process title set in place (setproctitle): one argv string with spaces and no path,
    e.g. "myapp: worker 3". A forked process may carry one: not exec evidence."""
    return len(cmdline) == 1 and " " in cmdline[0] and "/" not in cmdline[0].split()[0]


@dataclass(slots=True)
class Node:
    key: Key
    parent: Key | None
    cmdline: list[str]
    exe: str | None
    born: float
    ended: float | None = None
    execd: bool = False  # exec'd after its fork (event, or evidence against its parent's)
    role: str = ""
    record_id: int = -1
    exec_at: float | None = None  # its last exec, when the kernel's events told the time
    #: (exec_at,): the program it runs since then can never be a wrapper (see forget_ended)
    no_wrap: tuple[float | None] | None = None

    def lasting(self) -> bool:
        return self.ended is None or self.ended - self.born >= LASTING_S


class RoleBook:
    """Every process seen in one tree, and the roles decided from the whole structure."""

    def __init__(self, root: Key) -> None:
        self.root = root
        self.nodes: dict[Key, Node] = {}
        self._children: dict[Key, list[Key]] = {}
        self.dirty = False
        self.execs: list[Key] = []  # processes newly known to have exec'd (to record)
        self.now = float("-inf")  # the latest time the book was told (births, ends)
        self._ended: list[Key] = []  # ended processes not forgotten yet
        self.forgotten = 0

    def add(self, key: Key, parent: Key | None, cmdline: list[str], exe: str | None,
            t: float, execd: bool = False, record_id: int = -1) -> None:
        node = Node(key, parent, list(cmdline), exe, t, execd=execd, record_id=record_id)
        self.nodes[key] = node
        self.dirty = True
        self.now = max(self.now, t)
        if execd:
            self.execs.append(key)
        if parent is not None and parent in self.nodes:  # (not one already forgotten)
            self._children.setdefault(parent, []).append(key)

    def exec(self, key: Key, cmdline: list[str], exe: str | None,
             at: float | None = None, event: bool = False) -> None:
        """The process exec'd: a kernel event (`event`, at `at`), or its command line changed
        (a new process title set in place is not an exec)."""
        node = self.nodes.get(key)
        if node is None:
            return
        changed = bool(cmdline) and (cmdline != node.cmdline or exe != node.exe)
        if at is not None:
            node.exec_at, self.dirty = at, True
        if not node.execd and (event or (changed and not retitled(cmdline))):
            node.execd, self.dirty = True, True
            self.execs.append(key)
        if changed:
            node.cmdline, node.exe, self.dirty = list(cmdline), exe, True  # exe None: unread

    def end(self, key: Key, t: float) -> None:
        node = self.nodes.get(key)
        if node is not None and node.ended is None:
            node.ended = t
            self.dirty = True
            self.now = max(self.now, t)
            self._ended.append(key)

    def execd(self, node: Node) -> bool:
        """Exec'd after its fork: the kernel said so, its command line changed, or it runs
        another program than its parent's current one (its parent may have exec'd since)."""
        parent = self.nodes.get(node.parent) if node.parent is not None else None
        if node.execd or parent is None or not node.cmdline or not parent.cmdline:
            return node.execd
        other_exe = bool(node.exe and parent.exe and node.exe != parent.exe)
        return other_exe or (node.cmdline != parent.cmdline and not retitled(node.cmdline))

    def children(self, key: Key) -> list[Node]:
        """Its children forked by the program it runs now (not by one it exec'd away from)."""
        since = self.nodes[key].exec_at if key in self.nodes else None
        kids = [self.nodes[k] for k in self._children.get(key, ())]
        return kids if since is None else [c for c in kids if c.born >= since]

    def _wrapped(self, node: Node) -> Node | None:
        """The program `node` wraps (its current, else last, lasting exec'd child), or None
        when `node` is not a wrapper."""
        if node.no_wrap == (node.exec_at,):
            return None  # (a child that showed it was forgotten since)
        life = None if node.ended is None else node.ended - node.born
        kids = sorted((c for c in self.children(node.key) if c.lasting() or (
            life is not None and c.ended is not None and c.ended - c.born >= life / 2
        )), key=lambda c: c.born)  # (in a short run: a child that lived most of its life)
        if not kids or not all(self.execd(c) for c in kids):
            return None
        if any(h in " ".join(c.cmdline) for c in kids for h in _HELPERS):
            return None  # a Python master with multiprocessing helpers
        for before, after in itertools.pairwise(kids):
            if before.ended is None or before.ended > after.born:
                return None  # two programs at once: not a wrapper
        return kids[-1]

    def decide(self) -> dict[Key, str]:
        """Revise every role; returns {key: role} of the processes whose role changed."""
        self.dirty = False
        roles = {k: "descendant" for k in self.nodes}
        node = self.nodes.get(self.root)
        chain: list[Node] = []
        while node is not None and len(chain) < 32:
            inner = self._wrapped(node)
            if inner is None:
                break
            chain.append(node)
            node = inner
        for w in chain:
            roles[w.key] = "wrapper"
        if node is not None:
            roles[node.key] = "root" if node.key == self.root else "master"
            for child in self.children(node.key):
                text = " ".join(child.cmdline)
                helper = any(h in text for h in _HELPERS)
                if not self.execd(child) or (child.lasting() and not helper):
                    roles[child.key] = "worker"
                elif _FORKSERVER in text:
                    for grandchild in self.children(child.key):
                        if not self.execd(grandchild):
                            roles[grandchild.key] = "worker"
        changed = {}
        for key, role in roles.items():
            if self.nodes[key].role != role:
                self.nodes[key].role = role
                changed[key] = role
        return changed

    def forget_ended(self) -> int:
        """Drop the ended processes no decision reads any more (module docstring); call it
        after the roles of decide() were recorded. Returns how many were dropped."""
        pending, self._ended = self._ended, []
        dropped = 0
        # Children before their parents: a parent is a leaf once its children are gone.
        for key in sorted(pending, key=lambda k: self.nodes[k].born if k in self.nodes else 0,
                          reverse=True):
            node = self.nodes.get(key)
            if node is None:
                continue
            parent = self.nodes.get(node.parent) if node.parent is not None else None
            if parent is not None and parent.no_wrap != (parent.exec_at,):
                self._note_no_wrap(parent, node)
            if (key == self.root or self._children.get(key)
                    or (parent is not None and parent.no_wrap != (parent.exec_at,))):
                self._ended.append(key)  # still read: try again later
                continue
            del self.nodes[key]
            self._children.pop(key, None)
            if parent is not None:
                self._children[parent.key].remove(key)
            dropped += 1
        self.forgotten += dropped
        return dropped

    def _note_no_wrap(self, parent: Node, child: Node) -> None:
        """Whether ended `child` shows for good that `parent` wraps nothing (no_wrap)."""
        if parent.exec_at is not None and child.born < parent.exec_at:
            return  # a child of the program it exec'd away from
        if child.ended is None or child.ended - child.born < LASTING_S:
            return
        text = " ".join(child.cmdline)
        if not self.execd(child) or any(h in text for h in _HELPERS):
            parent.no_wrap = (parent.exec_at,)
            return
        for other in self.children(parent.key):  # another lasting child at the same time
            if other is child:
                continue
            sure = other.lasting() if other.ended is not None else (
                self.now - other.born >= LASTING_S)
            until = self.now if other.ended is None else other.ended
            if sure and other.born < child.ended and child.born < until:
                parent.no_wrap = (parent.exec_at,)
                return
