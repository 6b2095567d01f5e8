"""Following a tree's births, execs and exits as the kernel announces them.

An `EventFollower` reads the proc connector (memscope.procevents) on a thread of its own and
keeps the events of the processes it watches: the root, every process forked from a watched
one, and whatever the /proc scan adds with `watch()`. At fork it reads the child's start time
from /proc at once, and at exec its command line, so a child that lives 10 ms still gets its
identity and command. `take()` drains the socket under the same lock (so a tick sees every
event the kernel has sent up to then) and hands the tree the facts in kernel order.

Events of the last few seconds are kept for every process, so a process that forked before it
was watched (the root right after exec, a member found by the scan) has its children replayed.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from memscope.procevents import EXEC, EXIT, FORK, ProcConnector, ProcEvent
from memscope.procfs import AccessDenied, ProcessGone, ProcFS

__all__ = ["Birth", "EventFollower", "Exec", "Exit", "Fact"]

_KEEP_S = 5.0
_KEEP_MAX = 50_000


@dataclass(frozen=True, slots=True)
class Birth:
    pid: int
    parent: int  # the forking process (tgid)
    start_ticks: int
    at: float  # wall-clock time of the fork
    cmdline: tuple[str, ...] | None
    exact: bool = True  # start_ticks read from /proc; else derived from the event's time,
    # which can be one tick off (the kernel stamps the start a little before the event, and
    # the offset between the two clocks is measured)


@dataclass(frozen=True, slots=True)
class Exec:
    pid: int
    cmdline: tuple[str, ...] | None
    exe: str | None
    at: float | None = None  # wall-clock time of the exec


@dataclass(frozen=True, slots=True)
class Exit:
    pid: int
    start_ticks: int
    exit_code: int  # raw wait status
    at: float


Fact = Birth | Exec | Exit


def _offset(clock: Callable[[], int]) -> int:
    """clock() - CLOCK_MONOTONIC in ns, from the tightest of a few bracketed reads (a read
    preempted between the two clocks would be off by the time it was preempted)."""
    best = (1 << 62, 0)
    for _ in range(5):
        before = time.monotonic_ns()
        value = clock()
        after = time.monotonic_ns()
        best = min(best, (after - before, value - (before + after) // 2))
    return best[1]


class EventFollower:
    def __init__(self, connector: ProcConnector, procfs: ProcFS) -> None:
        self.connector = connector
        self.procfs = procfs
        self._lock = threading.Lock()
        self._watched: dict[int, int] = {}  # tgid -> start_ticks
        self._facts: list[Fact] = []
        self._recent: deque[ProcEvent] = deque(maxlen=_KEEP_MAX)
        self._last_exit: dict[int, ProcEvent] = {}  # watched tgid -> its latest task exit
        self._stop = threading.Event()
        self.cpu_s = 0.0  # CPU seconds of the reader thread (drains by take() are the caller's)
        self._clk_tck = os.sysconf("SC_CLK_TCK")
        # Event timestamps are CLOCK_MONOTONIC; stat's start time is CLOCK_BOOTTIME.
        self._boot_offset_ns = _offset(lambda: time.clock_gettime_ns(time.CLOCK_BOOTTIME))
        self._wall_offset_ns = _offset(time.time_ns)
        self._thread = threading.Thread(target=self._loop, name="memscope-procevents",
                                        daemon=True)
        self._thread.start()

    @property
    def overruns(self) -> int:
        return self.connector.overruns

    def watch(self, pid: int, start_ticks: int) -> None:
        """Follow `pid` and its future (and recent) children."""
        self.watch_many({pid: start_ticks})

    def watch_many(self, processes: dict[int, int]) -> None:
        """Follow these processes (pid -> start_ticks): one pass over the kept events."""
        with self._lock:
            self._drain()
            new = {pid: start for pid, start in processes.items()
                   if self._watched.get(pid) != start}
            if new:
                self._watched.update(new)
                self._replay(new)

    def unwatch(self, processes: dict[int, int]) -> None:
        """Stop following these processes (pid -> start_ticks), found gone without their
        exit event (a lost event would keep them watched for ever)."""
        with self._lock:
            for pid, start in processes.items():
                if self._watched.get(pid) == start:
                    del self._watched[pid]
                    self._last_exit.pop(pid, None)

    @property
    def watched(self) -> int:
        """How many processes are followed."""
        return len(self._watched)

    def take(self) -> list[Fact]:
        """Every fact about watched processes since the last call, in kernel order."""
        with self._lock:
            self._drain()
            facts, self._facts = self._facts, []
        return facts

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.connector.close()

    # -- the thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        fd = self.connector.fileno()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.25)
            except (OSError, ValueError):
                return
            if ready:
                with self._lock:
                    try:
                        self._drain()
                    except OSError:
                        return
                self.cpu_s = time.thread_time()

    def _drain(self) -> None:
        for event in self.connector.read():
            self._recent.append(event)
            self._handle(event, self._watched)
        cutoff = time.monotonic_ns() - int(_KEEP_S * 1e9)
        while self._recent and self._recent[0].timestamp_ns < cutoff:
            self._recent.popleft()

    def _replay(self, scope: dict[int, int]) -> None:
        """Re-handle kept events that concern these processes and the children they forked."""
        scope = dict(scope)
        for event in list(self._recent):
            if event.what == FORK:
                if event.pid in self._watched or event.parent_tgid not in scope:
                    continue  # already followed, or not ours
            elif event.tgid not in scope or self._ticks(event) < scope[event.tgid]:
                continue  # about an earlier process that had the same PID
            self._handle(event, scope)
        for child, start in scope.items():
            self._watched.setdefault(child, start)

    def _handle(self, event: ProcEvent, watched: dict[int, int]) -> None:
        if event.what == FORK:
            if event.is_process and event.parent_tgid in watched:
                last = self._last_exit.pop(event.pid, None)
                if event.pid in watched and last is not None:
                    # Its PID was recycled (perhaps within one clock tick, so /proc could not
                    # tell the two apart when the old one's exit was read): it has ended.
                    self._facts.append(Exit(event.pid, watched[event.pid], last.exit_code,
                                            self._wall(last)))
                start, exact = self._start_ticks(event)
                watched[event.pid] = start
                if watched is not self._watched:
                    self._watched[event.pid] = start
                self._facts.append(Birth(event.pid, event.parent_tgid, start,
                                         self._wall(event), self._cmdline(event.pid), exact))
        elif event.what == EXEC:
            if event.tgid in watched:
                self._facts.append(Exec(event.tgid, self._cmdline(event.tgid),
                                        self.procfs.exe(event.tgid), self._wall(event)))
        elif event.what == EXIT and event.tgid in watched:
            self._last_exit[event.tgid] = event
            if not self._finished(event, watched):
                return
            del self._last_exit[event.tgid]
            start = watched.pop(event.tgid)
            if watched is not self._watched:
                self._watched.pop(event.tgid, None)
            self._facts.append(Exit(event.tgid, start, event.exit_code, self._wall(event)))

    def _finished(self, event: ProcEvent, watched: dict[int, int]) -> bool:
        """Whether the exit of this task ended its process: no thread of it is left alive."""
        try:
            st = self.procfs.stat(event.tgid)
        except (ProcessGone, AccessDenied):
            return True
        if st.start_ticks != watched[event.tgid]:
            return True  # gone, and its PID already reused
        return st.state in ("Z", "X") and st.num_threads <= 1

    # -- helpers -------------------------------------------------------------------------

    def _start_ticks(self, event: ProcEvent) -> tuple[int, bool]:
        with contextlib.suppress(ProcessGone, AccessDenied):
            st = self.procfs.stat(event.pid)
            if st.ppid == event.parent_tgid or abs(st.start_ticks - self._ticks(event)) <= 1:
                return st.start_ticks, True
        return self._ticks(event), False  # already gone: derived from the event's time

    def _ticks(self, event: ProcEvent) -> int:
        return (event.timestamp_ns + self._boot_offset_ns) * self._clk_tck // 1_000_000_000

    def _wall(self, event: ProcEvent) -> float:
        return (event.timestamp_ns + self._wall_offset_ns) / 1e9

    def _cmdline(self, pid: int) -> tuple[str, ...] | None:
        try:
            return tuple(self.procfs.cmdline(pid))
        except (ProcessGone, AccessDenied):
            return None
