"""`memscope attach PID --trace-sites`: load the agent into a running CPython.

How, by target version:
- 3.14+: `sys.remote_exec(pid, script)`, run by the target's own interpreter (/proc/PID/exe),
  since the caller must be the same major.minor version.
- 3.8-3.13 (x86-64): memscope's own ptrace injector (`memscope.inject.pending`). It stops the
  main thread only while it is blocked in a system call, saves its registers and whole XSAVE
  state, maps one page with a raw mmap system call, writes a one-line statement into it,
  queues it with Py_AddPendingCall(PyRun_SimpleString, page), restores everything exactly and
  detaches; every step is checked. CPython runs pending calls on the main thread, with the GIL
  held, at its next bytecode boundary: never inside malloc or the GC's C code, the same safe
  point as 3.14's remote_exec. No breakpoint is inserted. (gdb is not used: on CPUs with AMX
  its register restore fails and the target dies with errno 514, see docs/agent.md.)

The injected statement runs a script in the private run directory that loads the agent from
this installation by file path and starts it; it records its outcome in a status file.
Tracing starts at that moment: allocation sites exist only for allocations made after attach.

The target can opt out: PYTHON_DISABLE_REMOTE_DEBUG in its environment or
`-X disable_remote_debug` on its command line (read from /proc) is honoured on every version.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from memscope.agent import AGENT_DIR, PRIVATE_NAME
from memscope.inject.channel import AgentClient, agent_pids, wait_for_agent
from memscope.inject.errors import (
    AgentError,
    InjectError,
    PtraceDenied,
    RemoteDebugDisabled,
)
from memscope.inject.pending import queue_statement
from memscope.inject.ptrace import SUPPORTED as PTRACE_SUPPORTED
from memscope.procfs import AccessDenied, ProcessGone, ProcFS

__all__ = [
    "Plan",
    "detach_agents",
    "inject",
    "injection_script",
    "injection_statement",
    "plan_injection",
    "remote_debug_opt_out",
]

INJECT_TIMEOUT_S = 30.0
QUEUE_TIMEOUT_S = 5.0  # how long to wait for the main thread to block in a system call


@dataclass(frozen=True)
class Plan:
    method: str  # "remote_exec" | "ptrace"
    version: tuple[int, int]
    tool: str  # remote_exec: the python executable to run; ptrace: the interpreter image


def remote_debug_opt_out(environ: dict[str, str], cmdline: list[str]) -> str | None:
    """Why the target refuses remote debugging, or None."""
    if environ.get("PYTHON_DISABLE_REMOTE_DEBUG"):
        return "the target sets PYTHON_DISABLE_REMOTE_DEBUG"
    args = cmdline[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-c", "-m") or not a.startswith("-") or a == "-":
            break  # options of the script, not of the interpreter
        if a == "-X" and i + 1 < len(args):
            if args[i + 1].split("=")[0] == "disable_remote_debug":
                return "the target runs with -X disable_remote_debug"
            i += 2
            continue
        if a.startswith("-X") and a[2:].split("=")[0] == "disable_remote_debug":
            return "the target runs with -X disable_remote_debug"
        i += 1
    return None


def plan_injection(
    version: tuple[int, int] | None,
    exe: str,
    image: str | None,
    free_threaded: bool = False,
    ptrace_supported: bool = PTRACE_SUPPORTED,
) -> Plan:
    """Choose how to inject into a CPython `version` (decision logic, no side effects).
    `image` is the file holding the interpreter (libpython or the executable)."""
    if version is None:
        raise InjectError("the target is not a CPython interpreter memscope can recognise")
    if version < (3, 8):
        raise InjectError(f"CPython {version[0]}.{version[1]} is not supported (3.8+)")
    if free_threaded:
        raise InjectError("free-threaded CPython builds are not supported by the agent")
    if version >= (3, 14):
        return Plan("remote_exec", version, exe)
    if not ptrace_supported:
        raise InjectError(
            f"attaching to CPython {version[0]}.{version[1]} needs x86-64 Linux"
            " (memscope's ptrace injector); CPython 3.14+ targets work everywhere"
        )
    if image is None:
        raise InjectError("the target's interpreter image was not found in its mappings")
    return Plan("ptrace", version, image)


def injection_script(run_dir: str, frames: int, trace_workers: bool, status_path: str) -> str:
    """Python source run inside the target: load the agent by path, start it, write status."""
    return f'''# memscope agent injection (runs inside the target; stdlib only)
def _memscope_inject():
    import json, os, sys
    status = {{"pid": os.getpid(), "error": ""}}
    try:
        import importlib.util
        name = {PRIVATE_NAME!r}
        if name not in sys.modules:
            d = {AGENT_DIR!r}
            spec = importlib.util.spec_from_file_location(
                name, os.path.join(d, "__init__.py"), submodule_search_locations=[d])
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        runtime = sys.modules[name + ".runtime"] if name + ".runtime" in sys.modules else None
        if runtime is None:
            import importlib
            runtime = importlib.import_module(name + ".runtime")
        status["error"] = runtime.start({run_dir!r}, {int(frames)}, {bool(trace_workers)!r})
    except BaseException as exc:
        status["error"] = "%s: %s" % (type(exc).__name__, exc)
    try:
        with open({status_path!r}, "w") as f:
            json.dump(status, f)
    except BaseException:
        pass
_memscope_inject()
'''


def injection_statement(script: str) -> str:
    """The statement queued with Py_AddPendingCall: run `script`, never raise. (A pending
    call that fails would surface in the target as a SystemError at a random place.)"""
    return (
        "try:\n"
        f"    exec(compile(open({script!r}).read(), {script!r}, 'exec'),"
        " {'__name__': '_memscope_inject'})\n"
        "except BaseException:\n"
        "    pass\n"
    )


def _read_target(procfs: ProcFS, pid: int) -> tuple[dict[str, str], list[str], str]:
    try:
        raw = procfs.read(pid, "environ")
        cmdline = procfs.cmdline(pid)
        exe = procfs.exe(pid) or ""
    except ProcessGone:
        raise InjectError(f"no process with PID {pid}") from None
    except AccessDenied:
        raise PtraceDenied(
            f"permission denied reading process {pid}",
            hint="run memscope as the target's user, or as root",
        ) from None
    env = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env, cmdline, exe


def inject(
    pid: int,
    run_dir: str,
    frames: int,
    trace_workers: bool = False,
    timeout: float = INJECT_TIMEOUT_S,
    procfs: ProcFS | None = None,
) -> dict[str, Any]:
    """Inject and start the agent in `pid`; returns the agent's ping answer, plus under
    "inject" how it went: method, queued_s / started_s (seconds until queued / answering),
    and for ptrace the attempts, held_s (how long the main thread was stopped) and syscall
    (the system call it was blocked in)."""
    from memscope.cow.cpython import detect_target

    procfs = procfs if procfs is not None else ProcFS()
    env, cmdline, exe = _read_target(procfs, pid)
    reason = remote_debug_opt_out(env, cmdline)
    if reason is not None:
        raise RemoteDebugDisabled(f"not injecting into {pid}: {reason}")
    target = detect_target(pid, procfs)
    version = target.minor if target.implementation == "cpython" and target.version else None
    plan = plan_injection(version, exe, target.image, free_threaded=target.free_threaded)
    status = os.path.join(run_dir, f"inject-{pid}.json")
    script = os.path.join(run_dir, f"inject-{pid}.py")
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(injection_script(run_dir, frames, trace_workers, status))
    started = time.monotonic()
    stats: dict[str, Any] = {"method": plan.method}
    if plan.method == "remote_exec":
        _remote_exec(plan.tool, pid, script, timeout)
    else:
        done = queue_statement(
            pid, plan.tool, injection_statement(script), min(timeout, QUEUE_TIMEOUT_S), procfs
        )
        stats.update(attempts=done.attempts, held_s=done.stopped_s, syscall=done.syscall)
    stats["queued_s"] = time.monotonic() - started
    left = max(1.0, timeout - (time.monotonic() - started))
    try:
        info = wait_for_agent(run_dir, pid, left)
        stats["started_s"] = time.monotonic() - started
        info["inject"] = stats
        return info
    except AgentError:
        pass
    if os.path.exists(status):
        with open(status) as f:
            err = json.load(f).get("error", "")
        raise InjectError(f"the agent did not start in {pid}: {err or 'unknown reason'}")
    raise InjectError(
        f"the agent is queued in {pid} but has not run within {left:.0f}s: the target's main"
        " thread has not executed Python code since (blocked in a C call?)"
    )


def detach_agents(run_dir: str) -> list[int]:
    """Ask every agent of run_dir to stop tracing and close its channel; returns their pids."""
    done = []
    for pid in agent_pids(run_dir):
        try:
            with AgentClient.for_pid(run_dir, pid, timeout=5.0) as c:
                c.request("shutdown")
            done.append(pid)
        except AgentError:
            pass
    return done


def _remote_exec(python: str, pid: int, script: str, timeout: float) -> None:
    code = f"import sys; sys.remote_exec({pid}, {script!r})"
    try:
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise InjectError(f"sys.remote_exec did not return within {timeout:g}s") from None
    except OSError as exc:
        raise InjectError(f"cannot run the target's interpreter {python}: {exc}") from None
    if out.returncode != 0:
        msg = (out.stderr.strip().splitlines() or ["?"])[-1]
        if "PermissionError" in msg or "Operation not permitted" in msg:
            raise PtraceDenied(f"sys.remote_exec into {pid} was refused: {msg}")
        raise InjectError(f"sys.remote_exec into {pid} failed: {msg}")
