"""Tracking a process tree: the root and all its descendants, rediscovered every tick.

A process's identity is (pid, start_ticks), so a recycled PID is a new process. Two sources:

* The kernel's process events (memscope.follow, as root): every fork, exec and exit of the
  tree, in order, even of a child that lived 10 ms between two ticks. A PID recycled within
  one clock tick gives the same (pid, start_ticks) twice; the events tell the two apart and the
  recording numbers the second one (`processes.reuse`).
* A /proc scan, always: this kernel may lack /proc/PID/task/*/children, so descendants are
  found from the ppid in /proc/PID/stat. Only PIDs not seen before are read each tick; PIDs
  known to be outside the tree are re-checked every `recheck_every` ticks to notice PID reuse.
  A member whose PID is reused between two ticks is noticed by the sampler, whose reads go
  through a directory fd bound to the original process (ProcessHandle), and removed with
  `remove()`.

A process is alive while any of its threads is: a leader that called pthread_exit shows as a
zombie with other threads still counted, and is not taken as exited. When memscope is a child
subreaper (`run`), orphans reparented to it (`adopt_from`) stay members and are reaped here.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field

from memscope.follow import Birth, EventFollower, Exec, Exit, Fact
from memscope.procfs import AccessDenied, ProcessGone, ProcFS, Stat
from memscope.roles import RoleBook

__all__ = ["Member", "ProcessTree", "TreeChange", "python_version_of"]

_PY_EXE = re.compile(r"python(\d\.\d+)(?:\.\d+)?")
_PY_VERSION_DIR = re.compile(r"/(\d\.\d+\.\d+)[^/]*/bin/")
_LIBPYTHON = re.compile(rb"libpython(\d\.\d+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Member:
    pid: int
    start_ticks: int
    ppid: int
    role: str
    parent_key: tuple[int, int] | None
    record_id: int = -1  # set by whoever records the process
    exited: bool = False
    exit_code: int | None = None  # raw wait status
    exited_at: float | None = None  # kernel's exit time, when the events told it
    started_at: float | None = None  # kernel's fork time, when the events told it
    cmdline: list[str] | None = None  # as read when the events announced it
    execd: bool = False  # the kernel reported an exec of it

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start_ticks)


@dataclass(slots=True)
class TreeChange:
    born: list[Member]  # may already have exited (seen only through the events)
    died: list[Member]
    exited: list[Member] = field(default_factory=list)  # turned zombie / exited, still listed


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


def _zombie(st: Stat) -> bool:
    """Exited: a zombie with no thread left (a leader gone by pthread_exit counts the rest)."""
    return st.state in ("Z", "X") and st.num_threads <= 1


class ProcessTree:
    """The set of live processes descended from (and including) a root."""

    def __init__(
        self,
        procfs: ProcFS,
        root_pid: int,
        recheck_every: int = 10,
        exclude: set[int] | frozenset[int] = frozenset(),
        follower: EventFollower | None = None,
        adopt_from: int | None = None,
    ) -> None:
        self.procfs = procfs
        self._exclude = exclude
        root = procfs.stat(root_pid)
        self.root = Member(root.pid, root.start_ticks, root.ppid, "root", None)
        self.roles = RoleBook(self.root.key)  # fed by whoever records the members
        self.members: dict[int, Member] = {}
        self._outside: dict[int, int] = {}  # pid -> start_ticks of known non-members
        self._recheck_every = recheck_every
        self._ticks = 0
        self.follower = follower
        self.adopt_from = adopt_from  # our own PID when we are the subreaper of the tree
        self._departed: dict[int, Member] = {}
        if follower is not None:
            follower.watch(root.pid, root.start_ticks)

    def refresh(self) -> TreeChange:
        """Rediscover the tree. The first call reports the root (and existing descendants)."""
        self._ticks += 1
        if self._ticks % self._recheck_every == 0:
            self._outside.clear()
        change = TreeChange(born=[], died=[])
        if self._ticks == 1:
            self._add_root(change)  # first, so the events of its children find their parent
        # Clock tick of the listing: a listed PID may belong, by the time its stat is read,
        # to a process forked after the events were drained; those wait for the next tick.
        listing_tick = time.clock_gettime_ns(time.CLOCK_BOOTTIME) * _CLK_TCK // 1_000_000_000
        listed = set(self.procfs.pids())
        live = listed
        if self.follower is not None:
            # The events are read after the listing: every process listed was forked before,
            # so the events of a watched parent's children come before the scan sees them.
            # Members found gone since the last refresh whose exit event was not yet read:
            departed, self._departed = self._departed, {}
            for fact in self.follower.take():
                self._apply(fact, change, departed)
            # Gone from /proc before the previous listing, yet no exit event since: the
            # kernel's event was lost (socket overrun); the follower stops watching it
            # (unless its PID is a member again: a reuse within one clock tick has the same
            # start time, and the newcomer's events must go on).
            lost = {m.pid: m.start_ticks for m in departed.values()
                    if m.exit_code is None and m.pid not in self.members}
            if lost:
                self.follower.unwatch(lost)
            live = set(self.procfs.pids())  # (members born since the listing are listed now)
        gone = [m for pid, m in self.members.items() if pid not in live]
        for m in gone:
            del self.members[m.pid]
            if m in change.born:  # born and gone between two ticks: seen only in the events
                m.exited = True
                if m.exit_code is None and self.follower is not None:
                    self._departed[m.pid] = m  # its exit event is still to come
            else:
                change.died.append(m)
                self._departing(m)

        candidates: list[Stat] = []
        for pid in listed & live:
            if pid in self.members or pid in self._outside or pid in self._exclude:
                continue
            try:
                candidates.append(self.procfs.stat(pid))
            except (ProcessGone, AccessDenied):
                continue
        candidates.sort(key=lambda s: s.start_ticks)  # parents start before their children
        found: dict[int, int] = {}  # by the scan, for the events to follow from now on

        for st in candidates:
            if self.follower is not None and st.start_ticks >= listing_tick:
                continue
            if st.pid == self.root.pid and st.start_ticks == self.root.start_ticks:
                member = self.root
            else:
                parent = self.members.get(st.ppid)
                if parent is not None and parent.start_ticks <= st.start_ticks:
                    role = "worker" if parent is self.root else "descendant"
                    member = Member(st.pid, st.start_ticks, st.ppid, role, parent.key)
                elif st.ppid == self.adopt_from:
                    # An orphan reparented to us (the subreaper): its parent died unseen.
                    member = Member(st.pid, st.start_ticks, st.ppid, "descendant", None)
                else:
                    self._outside[st.pid] = st.start_ticks
                    continue
            if _zombie(st):
                member.exited = True
                member.exit_code = st.exit_code
            self.members[st.pid] = member
            change.born.append(member)
            found[member.pid] = member.start_ticks
        if self.follower is not None and found:
            self.follower.watch_many(found)
        self._reap(change.born + change.exited)
        return change

    def _add_root(self, change: TreeChange) -> None:
        try:
            st = self.procfs.stat(self.root.pid)
        except (ProcessGone, AccessDenied):
            return
        if st.start_ticks == self.root.start_ticks:
            if _zombie(st):
                self.root.exited = True
                self.root.exit_code = st.exit_code
            self.members[self.root.pid] = self.root
            change.born.append(self.root)

    def _departing(self, member: Member) -> None:
        if self.follower is not None and not member.exited:
            self._departed[member.pid] = member

    def _apply(self, fact: Fact, change: TreeChange, departed: dict[int, Member]) -> None:
        """One kernel event about a watched process."""
        member = self.members.get(fact.pid)
        if member is None and isinstance(fact, Exit):
            member = departed.get(fact.pid)  # its exit code arrives after we saw it gone
        if isinstance(fact, Birth):
            if member is not None:
                same = member.start_ticks == fact.start_ticks or (
                    not fact.exact and abs(member.start_ticks - fact.start_ticks) <= 1)
                if same and not member.exited:
                    return  # the scan found it first
                del self.members[fact.pid]  # its PID was reused
                if member not in change.born:  # (one born this tick is recorded as it is)
                    change.died.append(member)
            parent = self.members.get(fact.parent) or departed.get(fact.parent)
            if parent is None:
                return
            role = "worker" if parent is self.root else "descendant"
            child = Member(fact.pid, fact.start_ticks, fact.parent, role, parent.key,
                           started_at=fact.at,
                           cmdline=list(fact.cmdline) if fact.cmdline is not None else None)
            self.members[fact.pid] = child
            change.born.append(child)
        elif member is None:
            return
        elif isinstance(fact, Exec):
            member.execd = True
            if fact.cmdline is not None:
                member.cmdline = list(fact.cmdline)
            self.roles.exec(member.key, member.cmdline or [], fact.exe, fact.at, event=True)
        elif member.start_ticks == fact.start_ticks and (
            not member.exited or member.exit_code is None
        ):
            member.exited = True
            member.exit_code = fact.exit_code
            if member.exited_at is None:
                member.exited_at = fact.at
            if member not in change.born:
                change.exited.append(member)

    def _reap(self, members: list[Member]) -> None:
        """As the subreaper, collect adopted orphans that exited (never the root: Popen's)."""
        if self.adopt_from is None:
            return
        for member in members:
            if member.exited and member is not self.root:
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(member.pid, os.WNOHANG)

    def remove(self, member: Member) -> None:
        """Forget a member found gone by a reader (its PID may already belong to another)."""
        if self.members.get(member.pid) is member:
            del self.members[member.pid]
            self._departing(member)

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
            if _zombie(st) and st.start_ticks == member.start_ticks:
                member.exited = True
                member.exit_code = st.exit_code
                found.append(member)
        self._reap(found)
        return found
