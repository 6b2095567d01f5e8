"""Process events from the kernel's proc connector (netlink, as forkstat reads them).

Every fork, exec and exit on the machine is announced on a NETLINK_CONNECTOR socket bound to
the CN_IDX_PROC group once a listener sends PROC_CN_MCAST_LISTEN. Root (CAP_NET_ADMIN in the
initial network namespace) is needed; elsewhere `ProcConnector.open()` raises
ConnectorUnavailable with the reason, and callers fall back to scanning /proc.

`parse_events` is pure: datagram bytes in, `ProcEvent`s out (layouts from linux/cn_proc.h and
linux/connector.h). Event timestamps are the kernel's CLOCK_MONOTONIC nanoseconds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from dataclasses import dataclass

__all__ = [
    "EXEC",
    "EXIT",
    "FORK",
    "ConnectorUnavailable",
    "ProcConnector",
    "ProcEvent",
    "parse_events",
]

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
_NLMSG_ERROR = 2

FORK = 0x00000001
EXEC = 0x00000002
EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_FORK = struct.Struct("=iiii")  # parent pid, parent tgid, child pid, child tgid
_EXEC = struct.Struct("=ii")  # pid, tgid
_EXIT = struct.Struct("=iiIIii")  # pid, tgid, exit_code, exit_signal, parent pid, parent tgid
_RCVBUF = 8 * 1024 * 1024


class ConnectorUnavailable(Exception):
    """The proc connector cannot be used here (not root, no CONFIG_PROC_EVENTS, netns)."""


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """One event. `pid`/`tgid` are the task's thread id and process id; for FORK they are the
    child's and `parent_tgid` is the forking process. `exit_code` is a raw wait status."""

    what: int
    timestamp_ns: int
    pid: int
    tgid: int
    parent_tgid: int = 0
    exit_code: int = 0

    @property
    def is_process(self) -> bool:
        """A process (thread group leader), not a thread of one."""
        return self.pid == self.tgid


def _parse_event(body: bytes) -> ProcEvent | None:
    if len(body) < _EVENT_HEAD.size:
        return None
    what, _cpu, ts = _EVENT_HEAD.unpack_from(body)
    data = body[_EVENT_HEAD.size :]
    if what == FORK and len(data) >= _FORK.size:
        _ppid, ptgid, pid, tgid = _FORK.unpack_from(data)
        return ProcEvent(FORK, ts, pid, tgid, parent_tgid=ptgid)
    if what == EXEC and len(data) >= _EXEC.size:
        pid, tgid = _EXEC.unpack_from(data)
        return ProcEvent(EXEC, ts, pid, tgid)
    if what == EXIT and len(data) >= _EXIT.size:
        pid, tgid, code, _sig, _ppid, ptgid = _EXIT.unpack_from(data)
        return ProcEvent(EXIT, ts, pid, tgid, parent_tgid=ptgid, exit_code=code)
    return None  # uid/gid/sid/comm/ptrace/coredump events, acks


def parse_events(data: bytes) -> list[ProcEvent]:
    """Fork, exec and exit events in one netlink datagram (which may hold several messages)."""
    events: list[ProcEvent] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        if kind == NLMSG_DONE:
            start = offset + _NLMSGHDR.size
            if length - _NLMSGHDR.size >= _CN_MSG.size:
                idx, val, _s, _a, size, _f = _CN_MSG.unpack_from(data, start)
                body = data[start + _CN_MSG.size : start + _CN_MSG.size + size]
                if (idx, val) == (CN_IDX_PROC, CN_VAL_PROC):
                    event = _parse_event(body)
                    if event is not None:
                        events.append(event)
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return events


def _control(op: int) -> bytes:
    payload = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


class ProcConnector:
    """A subscribed, non-blocking proc connector socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.overruns = 0  # times the kernel dropped events because we read too slowly

    @classmethod
    def open(cls) -> ProcConnector:
        # Since Linux 6.6 an unprivileged listener is accepted but sees only non-zero exits:
        # useless for following a tree, so require root outright.
        if os.geteuid() != 0:
            raise ConnectorUnavailable("proc connector unavailable: needs root")
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except (OSError, AttributeError) as exc:
            raise ConnectorUnavailable(f"no netlink connector socket ({exc})") from None
        try:
            for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, _RCVBUF)
                    break
                except OSError:
                    continue
            sock.bind((0, CN_IDX_PROC))
            sock.send(_control(PROC_CN_MCAST_LISTEN))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            reason = "needs root (CAP_NET_ADMIN)" if exc.errno in (errno.EPERM, errno.EACCES) \
                else os.strerror(exc.errno or 0) or str(exc)
            raise ConnectorUnavailable(f"proc connector unavailable: {reason}") from None
        return cls(sock)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[ProcEvent]:
        """Every event queued now (never blocks)."""
        events: list[ProcEvent] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the queue overflowed: events were lost
                    self.overruns += 1
                    continue
                raise
            events.extend(parse_events(data))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(_control(PROC_CN_MCAST_IGNORE))
        self.sock.close()
