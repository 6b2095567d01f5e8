"""Minimal x86-64 ptrace through libc (ctypes): seize one thread, read and write its registers
and extended (XSAVE) state, step it, and release it. Used by `memscope.inject.pending`.

Every call checks its result and raises PtraceFailed (or a subclass) with the errno text.
Waits poll with WNOHANG against a deadline, so no call blocks forever. A thread attached with
PTRACE_SEIZE (without PTRACE_O_EXITKILL) is released by the kernel if this process dies, and
runs on from the state it was last given.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal
import time

__all__ = ["SUPPORTED", "PtraceFailed", "Regs", "Stop", "Thread", "TimedOut"]

SUPPORTED = platform.machine() in ("x86_64", "AMD64") and os.name == "posix"

_SINGLESTEP, _CONT, _DETACH = 9, 7, 17
_GETREGS, _SETREGS, _GETFPREGS, _SETFPREGS = 12, 13, 14, 15
_GETREGSET, _SETREGSET, _SEIZE, _INTERRUPT = 0x4204, 0x4205, 0x4206, 0x4207
_NT_X86_XSTATE = 0x202
_EVENT_STOP = 128
_WALL = 0x40000000
_XSTATE_MAX = 1 << 16  # bytes offered to the kernel; it answers with the real size
_FXSAVE_SIZE = 512
_SYS_TGKILL = 234
_DETACH_STOP_S = 5.0

_REG_NAMES = [
    *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx"),
    *("rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base"),
    *("ds", "es", "fs", "gs"),
]


class Regs(ctypes.Structure):
    """struct user_regs_struct (x86-64)."""

    _fields_ = [(name, ctypes.c_ulonglong) for name in _REG_NAMES]

    def copy(self) -> Regs:
        out = Regs()
        ctypes.memmove(ctypes.byref(out), ctypes.byref(self), ctypes.sizeof(Regs))
        return out

    def raw(self) -> bytes:
        return ctypes.string_at(ctypes.addressof(self), ctypes.sizeof(Regs))


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class PtraceFailed(OSError):
    """A ptrace request or wait failed; the message names the step."""


class TimedOut(PtraceFailed):
    """The thread did not reach the expected stop in time."""


class Stop:
    """One wait status of the traced thread."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.exited = os.WIFEXITED(status) or os.WIFSIGNALED(status)
        self.stopped = os.WIFSTOPPED(status)
        self.sig = os.WSTOPSIG(status) if self.stopped else 0
        self.event = (status >> 16) & 0xFF if self.stopped else 0

    @property
    def interrupt(self) -> bool:
        """PTRACE_EVENT_STOP: the stop PTRACE_INTERRUPT asked for (or a group-stop)."""
        return self.stopped and self.event == _EVENT_STOP

    def describe(self) -> str:
        if self.exited:
            return "the thread exited"
        if self.interrupt:
            return "interrupt stop"
        return f"stopped by {signal.Signals(self.sig).name if self.sig else 'signal 0'}"


_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long


def _call(what: str, req: int, tid: int, addr: int | None, data: int | None) -> int:
    ctypes.set_errno(0)
    rc = int(_ptrace(req, tid, addr, data))
    if rc == -1:
        err = ctypes.get_errno()
        if err:
            raise PtraceFailed(err, f"{what}: {os.strerror(err)}")
    return rc


class Thread:
    """One seized thread of a process (the main thread: tid == pid)."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        self.attached = False
        self.stopped = False
        self.pending_signals: list[int] = []  # signals that arrived while we held the thread

    def seize(self) -> None:
        _call("PTRACE_SEIZE", _SEIZE, self.tid, 0, 0)
        self.attached = True

    def interrupt(self, timeout: float) -> Stop:
        """Stop the thread where it is; returns the interrupt stop."""
        _call("PTRACE_INTERRUPT", _INTERRUPT, self.tid, 0, 0)
        while True:
            stop = self.wait(timeout)
            if stop.interrupt:
                return stop
            self.resume_after(stop)  # a signal arrived first: keep it for later

    def wait(self, timeout: float) -> Stop:
        deadline = time.monotonic() + timeout
        delay = 0.0002
        while True:
            try:
                pid, status = os.waitpid(self.tid, os.WNOHANG | _WALL)
            except ChildProcessError:
                self.attached = self.stopped = False
                raise PtraceFailed(errno.ECHILD, "the thread is gone") from None
            if pid == self.tid:
                stop = Stop(status)
                if stop.exited:
                    self.attached = self.stopped = False
                    raise PtraceFailed(errno.ESRCH, "the thread exited during injection")
                self.stopped = stop.stopped
                return stop
            if time.monotonic() >= deadline:
                raise TimedOut(errno.ETIMEDOUT, f"no ptrace stop within {timeout:g}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.005)

    def resume_after(self, stop: Stop) -> None:
        """Continue from an unwanted signal-delivery stop, remembering the signal."""
        if stop.sig and not stop.event:
            self.pending_signals.append(stop.sig)
        self.cont()

    def cont(self) -> None:
        _call("PTRACE_CONT", _CONT, self.tid, 0, 0)
        self.stopped = False

    def singlestep(self) -> None:
        _call("PTRACE_SINGLESTEP", _SINGLESTEP, self.tid, 0, 0)
        self.stopped = False

    def get_regs(self) -> Regs:
        regs = Regs()
        _call("PTRACE_GETREGS", _GETREGS, self.tid, 0, ctypes.addressof(regs))
        return regs

    def set_regs(self, regs: Regs) -> None:
        _call("PTRACE_SETREGS", _SETREGS, self.tid, 0, ctypes.addressof(regs))

    def get_fpstate(self) -> tuple[str, bytes]:
        """The whole XSAVE area (its size is the kernel's), or FXSAVE where XSAVE is absent."""
        buf = ctypes.create_string_buffer(_XSTATE_MAX)
        iov = _IoVec(ctypes.addressof(buf), _XSTATE_MAX)
        try:
            _call("PTRACE_GETREGSET", _GETREGSET, self.tid, _NT_X86_XSTATE, ctypes.addressof(iov))
            return "xstate", buf.raw[: iov.len]
        except PtraceFailed as exc:
            if exc.errno not in (errno.EINVAL, errno.ENODEV, errno.EIO):
                raise
        fx = ctypes.create_string_buffer(_FXSAVE_SIZE)
        _call("PTRACE_GETFPREGS", _GETFPREGS, self.tid, 0, ctypes.addressof(fx))
        return "fxsave", fx.raw

    def set_fpstate(self, kind: str, data: bytes) -> None:
        buf = ctypes.create_string_buffer(data, len(data))
        if kind == "xstate":
            iov = _IoVec(ctypes.addressof(buf), len(data))
            _call("PTRACE_SETREGSET", _SETREGSET, self.tid, _NT_X86_XSTATE, ctypes.addressof(iov))
            if iov.len != len(data):
                raise PtraceFailed(errno.EIO, f"PTRACE_SETREGSET wrote {iov.len}/{len(data)} bytes")
        else:
            _call("PTRACE_SETFPREGS", _SETFPREGS, self.tid, 0, ctypes.addressof(buf))

    def detach(self) -> None:
        """Release the thread, signal 0: from an interrupt or signal stop, the kernel then
        restarts an interrupted system call exactly as it would after any stop."""
        if self.attached:
            try:
                if not self.stopped:  # PTRACE_DETACH works on a stopped tracee only
                    self.interrupt(_DETACH_STOP_S)
                _call("PTRACE_DETACH", _DETACH, self.tid, 0, 0)
            finally:
                self.attached = self.stopped = False
        for sig in self.pending_signals:  # hand back what arrived while we held the thread
            _tgkill(self.tid, self.tid, sig)
        self.pending_signals.clear()


def _tgkill(pid: int, tid: int, sig: int) -> None:
    """Send `sig` to thread `tid` again (its original siginfo is not preserved)."""
    ctypes.set_errno(0)
    _libc.syscall(_SYS_TGKILL, ctypes.c_long(pid), ctypes.c_long(tid), ctypes.c_long(sig))


def read_mem(pid: int, addr: int, size: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
        f.seek(addr)
        data = f.read(size)
    if len(data) != size:
        raise PtraceFailed(errno.EIO, f"read {len(data)}/{size} bytes at {addr:#x}")
    return data


def write_mem(pid: int, addr: int, data: bytes) -> None:
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as f:
        f.seek(addr)
        n = f.write(data)
    if n != len(data) or read_mem(pid, addr, len(data)) != data:
        raise PtraceFailed(errno.EIO, f"write of {len(data)} bytes at {addr:#x} did not stick")
