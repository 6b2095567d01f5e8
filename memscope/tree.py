"""Tracking a process tree: the root and all its descendants, rediscovered every tick.

A process's identity is (pid, start_ticks), so a recycled PID is a new process. This kernel
may lack /proc/PID/task/*/children (CONFIG_PROC_CHILDREN), so descendants are found from the
ppid in /proc/PID/stat. Only PIDs not seen before are read each tick; PIDs known to be outside
the tree are re-checked every `recheck_every` ticks to notice PID reuse. A member whose PID is
reused between two ticks is noticed by the sampler, whose reads go through a directory fd
bound to the original process (ProcessHandle), and removed with `remove()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memscope.procfs import AccessDenied, ProcessGone, ProcFS, Stat

__all__ = ["Member", "ProcessTree", "TreeChange", "python_version_of"]

_PY_EXE = re.compile(r"python(\d\.\d+)(?:\.\d+)?")
_PY_VERSION_DIR = re.compile(r"/(\d\.\d+\.\d+)[^/]*/bin/")
_LIBPYTHON = re.compile(rb"libpython(\d\.\d+)")


@dataclass(slots=True)
class Member:
    pid: int
    start_ticks: int
    ppid: int
    role: str
    parent_key: tuple[int, int] | None
    record_id: int = -1  # set by whoever records the process
    exited: bool = False
    exit_code: int | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start_ticks)


@dataclass(slots=True)
class TreeChange:
    born: list[Member]
    died: list[Member]


def python_version_of(procfs: ProcFS, pid: int, exe: str | None) -> str | None:
    """Best cheap guess at a process's CPython version ("3.11" or "3.11.7"), else None."""
    if exe:
        found = _PY_VERSION_DIR.search(exe)
        if found and "python" in exe.rsplit("/", 1)[-1]:
            return found.group(1)
        found = _PY_EXE.search(exe.rsplit("/", 1)[-1])
        if found:
            return found.group(1)
    try:
        maps = procfs.read(pid, "maps")
    except (ProcessGone, AccessDenied):
        return None
    lib = _LIBPYTHON.search(maps)
    return lib.group(1).decode() if lib else None


class ProcessTree:
    """The set of live processes descended from (and including) a root."""

    def __init__(
        self,
        procfs: ProcFS,
        root_pid: int,
        recheck_every: int = 10,
        exclude: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        self.procfs = procfs
        self._exclude = exclude
        root = procfs.stat(root_pid)
        self.root = Member(root.pid, root.start_ticks, root.ppid, "root", None)
        self.members: dict[int, Member] = {}
        self._outside: dict[int, int] = {}  # pid -> start_ticks of known non-members
        self._recheck_every = recheck_every
        self._ticks = 0

    def refresh(self) -> TreeChange:
        """Rediscover the tree. The first call reports the root (and existing descendants)."""
        self._ticks += 1
        if self._ticks % self._recheck_every == 0:
            self._outside.clear()
        live = set(self.procfs.pids())
        died = [m for pid, m in self.members.items() if pid not in live]
        for m in died:
            del self.members[m.pid]

        candidates: list[Stat] = []
        for pid in live:
            if pid in self.members or pid in self._outside or pid in self._exclude:
                continue
            try:
                candidates.append(self.procfs.stat(pid))
            except (ProcessGone, AccessDenied):
                continue
        candidates.sort(key=lambda s: s.start_ticks)  # parents start before their children

        born: list[Member] = []
        for st in candidates:
            old = self.members.get(st.pid)
            if old is not None and old.start_ticks != st.start_ticks:
                died.append(old)  # PID reused between two ticks
                del self.members[st.pid]
            if st.pid == self.root.pid and st.start_ticks == self.root.start_ticks:
                member = self.root
            else:
                parent = self.members.get(st.ppid)
                if parent is None or parent.start_ticks > st.start_ticks:
                    self._outside[st.pid] = st.start_ticks
                    continue
                role = "worker" if parent is self.root else "descendant"
                member = Member(st.pid, st.start_ticks, st.ppid, role, parent.key)
            if st.state == "Z":
                member.exited = True
                member.exit_code = st.exit_code
            self.members[st.pid] = member
            born.append(member)
        return TreeChange(born=born, died=died)

    def remove(self, member: Member) -> None:
        """Forget a member found gone by a reader (its PID may already belong to another)."""
        if self.members.get(member.pid) is member:
            del self.members[member.pid]

    def check_zombies(self) -> list[Member]:
        """Members that turned zombie since last seen, with their exit code (Linux 3.5+)."""
        found = []
        for member in self.members.values():
            if member.exited:
                continue
            try:
                st = self.procfs.stat(member.pid)
            except (ProcessGone, AccessDenied):
                continue
            if st.state == "Z" and st.start_ticks == member.start_ticks:
                member.exited = True
                member.exit_code = st.exit_code
                found.append(member)
        return found
