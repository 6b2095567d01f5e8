"""Queue a Python statement in a running CPython 3.8-3.13 with ptrace, leaving it as it was.

Method (x86-64, the target's main thread only; its other threads keep running):

1. PTRACE_SEIZE and PTRACE_INTERRUPT the main thread (tid == pid). Inject only if it stopped
   inside a system call (orig_rax >= 0): there it holds no lock that Py_AddPendingCall takes.
   Stopped in user code, or with SIGTRAP/SIGSEGV blocked, it is released untouched and tried
   again a little later, until `timeout`; then the injection is refused with the reason.
2. Save all of its state: the general registers (orig_rax, which carries the syscall-restart
   state, included) and the whole XSAVE area (its size is the kernel's: ~11 KiB with AMX,
   where gdb 13's smaller buffer fails with EFAULT and leaves the registers unrestored).
3. Map one page: single-step an existing `syscall` instruction (the one the thread stopped
   after) with mmap's arguments and orig_rax = -1, so that no restart logic touches our rip.
4. Write the NUL-terminated statement into the page through /proc/PID/mem and read it back.
5. Call Py_AddPendingCall(PyRun_SimpleString, page) on an aligned stack below the red zone,
   returning to address 0: the SIGSEGV stop there ends the call (the signal is discarded)
   and rax holds its result, which must be 0.
6. Restore the saved registers and XSAVE area, check the registers read back identical, and
   PTRACE_DETACH with signal 0. The interrupted system call is restarted by the kernel exactly
   as after any stop (or returns EINTR where the kernel never restarts it, e.g. epoll_wait,
   which CPython retries since PEP 475).

A failure at any step restores what was saved, detaches, and raises InjectError. CPython runs
pending calls on its main thread, with the GIL held, at its next bytecode boundary.
"""

from __future__ import annotations

import contextlib
import errno
import random
import signal
import time
from dataclasses import dataclass

from memscope.cow.cpython._elf import ElfError, parse_elf
from memscope.inject.errors import InjectError, PtraceDenied
from memscope.inject.ptrace import PtraceFailed, Regs, Thread, read_mem, write_mem
from memscope.procfs import ProcFS, ProcfsError

__all__ = ["Injected", "queue_statement"]

_SYS_MMAP = 9
_SYSCALL = b"\x0f\x05"
_PAGE = 4096
_U64 = (1 << 64) - 1
_STEP_TIMEOUT_S = 5.0
_SYMBOLS = ("Py_AddPendingCall", "PyRun_SimpleString")


@dataclass(frozen=True)
class Injected:
    attempts: int  # interrupts until the main thread was found inside a system call
    stopped_s: float  # how long the main thread was held for the successful attempt
    syscall: int  # the system call it was blocked in (orig_rax)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def resolve_symbols(pid: int, image: str, procfs: ProcFS) -> dict[str, int]:
    """Runtime addresses of Py_AddPendingCall and PyRun_SimpleString in `pid`."""
    base = next((m.start for m in procfs.maps(pid) if m.path == image and m.offset == 0), None)
    try:
        elf = parse_elf(procfs.read(pid, "root" + image), set(_SYMBOLS))
    except (ElfError, OSError) as exc:
        raise InjectError(f"cannot read the interpreter image {image}: {exc}") from None
    missing = [s for s in _SYMBOLS if s not in elf.symbols]
    if base is None or missing:
        raise InjectError(f"{image} does not export {', '.join(missing) or 'a mapped image'}")
    bias = elf.load_bias(base)
    return {name: bias + elf.symbols[name][0] for name in _SYMBOLS}


def _status(pid: int, procfs: ProcFS) -> dict[str, str]:
    text = procfs.read(pid, f"task/{pid}/status").decode(errors="replace")
    return dict(ln.split(":\t", 1) for ln in text.splitlines() if ":\t" in ln)


def _trap_signals(fields: dict[str, str], key: str) -> list[signal.Signals]:
    """SIGTRAP / SIGSEGV in the SigBlk or SigIgn mask. Stepping and the end of the call raise
    them in the target, and the kernel would reset a blocked or ignored one to its default."""
    mask = int(fields.get(key, "0").strip() or "0", 16)
    return [sig for sig in (signal.SIGTRAP, signal.SIGSEGV) if mask >> (sig - 1) & 1]


def _check_target(pid: int, procfs: ProcFS) -> None:
    fields = _status(pid, procfs)
    tracer = int(fields.get("TracerPid", "0").strip() or 0)
    if tracer:
        raise PtraceDenied(f"process {pid} is already traced by process {tracer}")
    if fields.get("State", "").startswith(("T", "t")):
        # resuming it to run the call would undo a job-control stop (SIGSTOP, Ctrl-Z)
        raise InjectError(f"not injecting into {pid}: it is stopped ({fields['State'].strip()})")
    ignored = _trap_signals(fields, "SigIgn")
    if ignored:
        raise InjectError(f"not injecting into {pid}: it ignores {ignored[0].name}")
    if "shstk" in fields.get("x86_Thread_features", "").split():
        # the call returns to address 0 without a matching shadow-stack entry
        raise InjectError(f"not injecting into {pid}: it runs with a CET shadow stack")


def queue_statement(
    pid: int, image: str, statement: str, timeout: float, procfs: ProcFS | None = None
) -> Injected:
    """Queue `statement` to run in `pid`'s main thread (see the module docstring)."""
    procfs = procfs if procfs is not None else ProcFS()
    code = statement.encode() + b"\0"
    if len(code) > _PAGE:
        raise InjectError("injected statement too long")
    try:
        symbols = resolve_symbols(pid, image, procfs)
        _check_target(pid, procfs)
    except ProcfsError as exc:
        raise InjectError(f"cannot inject into {pid}: {exc}") from None
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        thread = Thread(pid)
        try:
            _seize(thread, pid)
            started = time.monotonic()
            thread.interrupt(_STEP_TIMEOUT_S)
            regs = thread.get_regs()
            # in a system call, with SIGTRAP/SIGSEGV not blocked (glibc blocks all signals for
            # a moment around clone and posix_spawn): else let it run and try again
            if _signed(regs.orig_rax) >= 0 and not _trap_signals(_status(pid, procfs), "SigBlk"):
                _inject_stopped(thread, regs, symbols, code)
                held = time.monotonic() - started
                return Injected(attempts, held, regs.orig_rax)
        except OSError as exc:  # PtraceFailed, or /proc/PID/mem itself
            raise InjectError(f"injection into {pid} failed: {exc.strerror or exc}") from None
        except ProcfsError as exc:
            raise InjectError(f"injection into {pid} failed: {exc}") from None
        finally:
            _release(thread)
        if time.monotonic() >= deadline:
            raise InjectError(
                f"not injecting into {pid}: its main thread was never found blocked in a system"
                f" call with SIGTRAP and SIGSEGV unblocked ({attempts} tries in {timeout:g}s);"
                " it runs CPU-bound code, where queueing is not known to be safe"
            )
        time.sleep(random.uniform(0.001, 0.01))


def _seize(thread: Thread, pid: int) -> None:
    try:
        thread.seize()
    except PtraceFailed as exc:
        if exc.errno == errno.EPERM:
            raise PtraceDenied(
                f"the kernel refused to let memscope trace process {pid}",
                hint="run as the target's user with kernel.yama.ptrace_scope=0, or as root /"
                " with CAP_SYS_PTRACE",
            ) from None
        if exc.errno == errno.ESRCH:
            raise InjectError(f"no process with PID {pid}") from None
        raise


def _release(thread: Thread) -> None:
    with contextlib.suppress(PtraceFailed):  # gone, or the kernel released it already
        thread.detach()


def _inject_stopped(thread: Thread, saved: Regs, symbols: dict[str, int], code: bytes) -> None:
    """The main thread is in an interrupt stop inside a system call: queue, then restore."""
    pid = thread.tid
    kind, fpstate = thread.get_fpstate()
    saved = saved.copy()
    try:
        page = _mmap_page(thread, saved)
        write_mem(pid, page, code)
        rc = _call_pending(thread, saved, symbols, page)
        if rc != 0:
            raise PtraceFailed(errno.EAGAIN, f"Py_AddPendingCall returned {rc} (queue full?)")
    finally:
        _restore(thread, saved, kind, fpstate)


def _restore(thread: Thread, saved: Regs, kind: str, fpstate: bytes) -> None:
    """Put back the saved state; every part is attempted even if another one fails."""
    failed: list[PtraceFailed] = []
    try:
        thread.set_fpstate(kind, fpstate)
    except PtraceFailed as exc:
        failed.append(exc)
    try:
        thread.set_regs(saved)
    except PtraceFailed as exc:
        failed.append(exc)
    if failed:
        raise failed[0]
    if thread.get_regs().raw() != saved.raw():
        raise PtraceFailed(errno.EIO, "the registers did not read back as saved")


def _mmap_page(thread: Thread, saved: Regs) -> int:
    at = saved.rip - 2
    if read_mem(thread.tid, at, 2) != _SYSCALL:
        raise PtraceFailed(errno.EINVAL, f"no syscall instruction before rip {saved.rip:#x}")
    r = saved.copy()
    r.rip, r.rax, r.orig_rax = at, _SYS_MMAP, _U64
    r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9 = 0, _PAGE, 0x3, 0x22, _U64, 0  # RW, PRIVATE|ANON
    thread.set_regs(r)
    while True:
        thread.singlestep()
        stop = thread.wait(_STEP_TIMEOUT_S)
        now = thread.get_regs()
        if stop.sig == signal.SIGTRAP and not stop.event and now.rip == at + 2:
            break
        if stop.event or stop.sig in (signal.SIGTRAP, signal.SIGSEGV, signal.SIGBUS):
            raise PtraceFailed(errno.EIO, f"mmap step: unexpected {stop.describe()}")
        thread.pending_signals.append(stop.sig)  # arrived before the step: keep, step again
    result = _signed(now.rax)
    if -4096 < result < 0:
        raise PtraceFailed(-result, f"mmap in the target failed: errno {-result}")
    return int(now.rax)


def _call_pending(thread: Thread, saved: Regs, symbols: dict[str, int], page: int) -> int:
    sp = ((saved.rsp - 512) & ~0xF) - 8  # below the red zone; rsp % 16 == 8 at entry
    write_mem(thread.tid, sp, b"\0" * 8)  # return address 0: the return faults, we stop
    r = saved.copy()
    r.rsp, r.rip, r.orig_rax, r.rax = sp, symbols["Py_AddPendingCall"], _U64, 0
    r.rdi, r.rsi = symbols["PyRun_SimpleString"], page
    r.eflags &= ~0x500  # TF and DF clear, as the ABI requires at a call
    thread.set_regs(r)
    thread.cont()
    while True:
        try:
            stop = thread.wait(_STEP_TIMEOUT_S)
        except PtraceFailed as exc:
            if exc.errno == errno.ETIMEDOUT:  # stuck on a lock: stop it and give up
                thread.interrupt(_STEP_TIMEOUT_S)
            raise
        if stop.sig == signal.SIGSEGV and not stop.event:
            now = thread.get_regs()
            if now.rip == 0 and now.rsp == sp + 8:
                eax = int(now.rax) & 0xFFFFFFFF  # an int
                return eax - (1 << 32) if eax >> 31 else eax
            raise PtraceFailed(errno.EFAULT, f"Py_AddPendingCall faulted at {now.rip:#x}")
        if stop.event or stop.sig in (signal.SIGTRAP, signal.SIGBUS, signal.SIGILL):
            raise PtraceFailed(errno.EIO, f"Py_AddPendingCall: unexpected {stop.describe()}")
        thread.pending_signals.append(stop.sig)
        thread.cont()
