"""`memscope attach PID --trace-sites`: load the agent into a running CPython.

How, by target version:
- 3.14+: `sys.remote_exec(pid, script)`, run by the target's own interpreter (/proc/PID/exe),
  since the caller must be the same major.minor version.
- 3.8-3.13: gdb in batch mode. gdb attaches (all threads stop), maps one page with mmap() (a
  plain system call: safe wherever the target stopped, unlike malloc), writes a one-line
  Python statement into it word by word, and queues it with Py_AddPendingCall(
  PyRun_SimpleString, page). Then it detaches. CPython runs pending calls on the main thread,
  with the GIL held, at its next bytecode boundary: never inside malloc or the GC's C code,
  the same safe point as 3.14's remote_exec. No breakpoint is inserted, so killing gdb on a
  timeout cannot leave a trap in the target. The target runs the injected statement once its
  main thread next executes Python code.

The injected statement runs a script in the private run directory that loads the agent from
this installation by file path and starts it; it records its outcome in a status file.
Tracing starts at that moment: allocation sites exist only for allocations made after attach.

The target can opt out: PYTHON_DISABLE_REMOTE_DEBUG in its environment or
`-X disable_remote_debug` on its command line (read from /proc) is honoured on every version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from memscope.agent import AGENT_DIR, PRIVATE_NAME
from memscope.inject.channel import AgentClient, agent_pids, wait_for_agent
from memscope.inject.errors import (
    AgentError,
    GdbMissing,
    InjectError,
    PtraceDenied,
    RemoteDebugDisabled,
)
from memscope.procfs import AccessDenied, ProcessGone, ProcFS

__all__ = [
    "Plan",
    "detach_agents",
    "gdb_commands",
    "inject",
    "injection_script",
    "plan_injection",
    "remote_debug_opt_out",
]

GDB_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Plan:
    method: str  # "remote_exec" | "gdb"
    version: tuple[int, int]
    tool: str  # the gdb or python executable to run


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
    version: tuple[int, int] | None, exe: str, gdb: str | None, free_threaded: bool = False
) -> Plan:
    """Choose how to inject into a CPython `version` (decision logic, no side effects)."""
    if version is None:
        raise InjectError("the target is not a CPython interpreter memscope can recognise")
    if version < (3, 8):
        raise InjectError(f"CPython {version[0]}.{version[1]} is not supported (3.8+)")
    if free_threaded:
        raise InjectError("free-threaded CPython builds are not supported by the agent")
    if version >= (3, 14):
        return Plan("remote_exec", version, exe)
    if gdb is None:
        raise GdbMissing(
            f"gdb is needed to attach to CPython {version[0]}.{version[1]}",
            hint="install it (Debian/Ubuntu: apt-get install gdb)",
        )
    return Plan("gdb", version, gdb)


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


def _words(data: bytes) -> list[int]:
    data = data + b"\0" * (8 - len(data) % 8)
    return [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]


def gdb_commands(statement: str) -> list[str]:
    """gdb batch commands that queue `statement` as a pending call (see the module docstring)."""
    code = statement.encode()
    if len(code) >= 4000:
        raise InjectError("injected statement too long")
    cmds = [
        "set pagination off",
        "set confirm off",
        "set width 0",
        "set scheduler-locking off",
        "handle all nostop noprint pass",
        "set $memscope_buf = (char *) mmap(0, 4096, 3, 34, -1, 0)",
        'printf "MEMSCOPE-BUF %lu\\n", (unsigned long) $memscope_buf',
    ]
    for k, w in enumerate(_words(code)):
        cmds.append(f"set {{unsigned long long}}($memscope_buf + {8 * k}) = {w}")
    cmds += [
        "set $memscope_rc = (int) Py_AddPendingCall((int (*)(void *)) PyRun_SimpleString,"
        " (void *) $memscope_buf)",
        'printf "MEMSCOPE-RC %d\\n", $memscope_rc',
        "detach",
        "quit",
    ]
    return cmds


def _run_gdb(gdb: str, pid: int, statement: str, timeout: float) -> None:
    argv = [gdb, "-nx", "-q", "--batch", "-p", str(pid)]
    for c in gdb_commands(statement):
        argv += ["-ex", c]
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise InjectError(f"gdb did not finish within {timeout:g}s; it was stopped") from None
    text = out.stdout + out.stderr
    if "ptrace: Operation not permitted" in text or "Could not attach" in text:
        raise PtraceDenied(
            f"the kernel refused to let gdb trace process {pid}",
            hint="run as the target's user with kernel.yama.ptrace_scope=0, or as root /"
            " with CAP_SYS_PTRACE",
        )
    if "MEMSCOPE-RC 0" not in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-3:]
        raise InjectError(f"gdb could not queue the agent in {pid}: {' | '.join(last)}")


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
    timeout: float = GDB_TIMEOUT_S,
    procfs: ProcFS | None = None,
) -> dict[str, Any]:
    """Inject and start the agent in `pid`; returns the agent's ping answer."""
    from memscope.cow.cpython import detect_target

    procfs = procfs if procfs is not None else ProcFS()
    env, cmdline, exe = _read_target(procfs, pid)
    reason = remote_debug_opt_out(env, cmdline)
    if reason is not None:
        raise RemoteDebugDisabled(f"not injecting into {pid}: {reason}")
    target = detect_target(pid, procfs)
    version = target.minor if target.implementation == "cpython" and target.version else None
    plan = plan_injection(version, exe, shutil.which("gdb"), free_threaded=target.free_threaded)
    status = os.path.join(run_dir, f"inject-{pid}.json")
    script = os.path.join(run_dir, f"inject-{pid}.py")
    fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(injection_script(run_dir, frames, trace_workers, status))
    started = time.monotonic()
    if plan.method == "remote_exec":
        _remote_exec(plan.tool, pid, script, timeout)
    else:
        statement = (
            f"exec(compile(open({script!r}).read(), {script!r}, 'exec'),"
            " {'__name__': '_memscope_inject'})"
        )
        _run_gdb(plan.tool, pid, statement, timeout)
    left = max(1.0, timeout - (time.monotonic() - started))
    try:
        return wait_for_agent(run_dir, pid, left)
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
