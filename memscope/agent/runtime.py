"""The agent's life cycle inside a target: start, fork handling, requests, exit.

Runs inside targets: stdlib only, Python 3.8+ syntax. `start()` and every hook contain their
own errors: the host interpreter never sees an exception from here.

memscope owns the run directory; its name carries the owner's identity
(memscope-PID-STARTTICKS-*, see owner_of). The server thread checks every second that this
process still exists; when it is gone (memscope died, SIGKILL included), the agent stops
tracing, removes its socket and its injection files, and ends its thread.

Commands served over the channel (see _server.py for the framing):
  ping            -> {pid, ppid, python, tracing: {mode, frames, origin_pid, ...}}
  resolve         {addrs: [int], max_frames: int, duty: float} -> {tracebacks, index}
                  (tracing process only; duty < 1 bounds the GIL share of the lookups)
  growth          {limit: int} -> {elapsed_s, sites: [{file, line, size_diff, count_diff, size}]}
                  growth of traced memory per allocating line since this process's first
                  growth request (its baseline)
  hold            {seconds: float} -> {pid, until}: memscope has read a worker's pages whose
                  sites this process must still resolve: if it exits within `seconds`
                  (at most HOLD_MAX_S), its atexit hook keeps serving until then or until a
                  hold of 0 s releases it (atexit runs before module teardown, so the traces
                  are still those of the program's objects). A process that does not exit
                  meanwhile is not affected.
"""

from __future__ import annotations

import array
import atexit
import base64
import os
import stat
import sys
import time
import tracemalloc
from typing import Any, Dict, List, Optional, Tuple

from . import (
    ENV_ENABLE,
    ENV_FRAMES,
    ENV_RUN_DIR,
    ENV_TRACE_WORKERS,
    MAX_REQUEST_BYTES,
    socket_path,
)
from ._owner import alive as _alive
from ._owner import owner_of
from ._server import Server
from ._tracing import Tracer

_MAX_ADDRS = 200000
HOLD_MAX_S = 60.0
_IGNORE = (tracemalloc.__file__, "<frozen importlib._bootstrap>", os.path.dirname(__file__))


class Agent:
    def __init__(self, run_dir: str, frames: int, trace_workers: bool) -> None:
        self.run_dir = run_dir
        self.frames = frames
        self.trace_workers = trace_workers
        self.tracer = Tracer()
        self.pid = os.getpid()
        self.server: Optional[Server] = None
        self.active = True
        self._fork_call: Tuple[Any, int] = (None, -1)
        self._retries = 0
        self._baseline: Optional[Tuple[float, Dict[Tuple[str, int], Tuple[int, int]]]] = None
        self.forked = False  # a child forked from the process that started the agent
        self.hold_until = 0.0  # time.monotonic() until which at_exit keeps serving (hold)
        self.owner = owner_of(run_dir)
        if self.owner is not None and not _alive(*self.owner):
            self.owner = None  # not visible from here (another pid namespace): no watch

    # -- life cycle ----------------------------------------------------------------------
    def begin(self) -> None:
        if self.frames > 0:
            self.tracer.start(self.frames, self.pid)
        self._serve()

    def _serve(self) -> None:
        idle = self._owner_gone if self.owner is not None else None
        path = socket_path(self.run_dir, self.pid)
        self.server = Server(path, self.handle, MAX_REQUEST_BYTES, idle)
        self.server.start()

    def before_fork(self) -> None:
        if self.server is not None and self.pid == os.getpid():
            self.server.stop()
            self._fork_call = _caller_of_fork()

    def after_fork_parent(self) -> None:
        # CPython 3.13 counts threads for its fork warning *after* the after_in_parent hooks,
        # so the thread restarts from a pending call once os.fork() has returned (its caller's
        # frame has moved past the call), where ctypes allows.
        if self.server is not None and self.pid == os.getpid() and not _defer(self._restart):
            self.server.start()

    def _restart(self) -> None:
        frame, lasti = self._fork_call
        if frame is not None and frame.f_lasti == lasti and self._retries < 100000:
            self._retries += 1
            if _defer(self._restart):
                return
        self._fork_call = (None, -1)
        self._retries = 0
        if self.server is not None and self.pid == os.getpid():
            self.server.start()

    def after_fork_child(self) -> None:
        if not self.active:
            return
        self.pid = os.getpid()
        self.forked = True
        if self.server is not None:
            self.server.abandon()
        self.server = None
        self._baseline = None
        if not self.trace_workers:
            self.tracer.detach_in_child()  # keeps origin_pid: traces live in that process
        elif self.tracer.mode == "tracing":
            self.tracer.origin_pid = self.pid  # tracing continues here; both heaps diverge
        self._serve()

    def shutdown(self) -> None:
        """Stop tracing and serving (memscope detaches); the fork hooks become no-ops."""
        self.active = False
        self.stop_tracing()
        if self.server is not None and self.pid == os.getpid():
            self.server.close()
        self.server = None

    def stop_tracing(self) -> None:
        """tracemalloc.stop() where the traces are this process's own; in a forked child the
        cheap detach instead (stop() would free, and so copy, the pages it shares with its
        parent: see _tracing.py)."""
        if self.forked:
            self.tracer.detach_in_child()
        else:
            self.tracer.stop()

    def _owner_gone(self) -> bool:
        """Server idle hook (its thread): True once memscope is gone, after cleaning up."""
        if self.owner is None or _alive(*self.owner) or self.pid != os.getpid():
            return False
        self.active = False
        self.server = None  # the server thread closes the socket and removes its file
        for name in ("inject-%d.py" % self.pid, "inject-%d.json" % self.pid):
            try:
                os.unlink(os.path.join(self.run_dir, name))
            except OSError:
                pass
        if not _defer(self.stop_tracing):  # tracing is switched off on the main thread
            self.stop_tracing()
        return True

    def at_exit(self) -> None:
        if self.server is not None and self.pid == os.getpid():
            while time.monotonic() < self.hold_until and self.active:
                time.sleep(0.02)  # the server thread answers memscope's pending resolutions
            self.server.close()

    # -- requests ------------------------------------------------------------------------
    def handle(self, req: Dict[str, Any]) -> Dict[str, Any]:
        paused = self.tracer.pause()
        try:
            return self._handle(req)
        finally:
            if paused:
                self.tracer.resume()

    def _handle(self, req: Dict[str, Any]) -> Dict[str, Any]:
        cmd = req["cmd"]
        if cmd == "ping":
            return {
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "python": "%d.%d.%d" % sys.version_info[:3],
                "tracing": self.tracer.describe(),
            }
        if cmd == "resolve":
            addrs = _addresses(req)
            max_frames = int(req.get("max_frames", 1000))
            duty = float(req.get("duty", 1.0))
            out = self.tracer.resolve(addrs, max(1, max_frames), duty)
            if "addrs_b64" in req:  # answer in kind: little-endian int32 indexes
                idx = array.array("i", out.pop("index"))
                if sys.byteorder != "little":
                    idx.byteswap()
                out["index_b64"] = base64.b64encode(idx.tobytes()).decode("ascii")
            return out
        if cmd == "growth":
            return self.growth(int(req.get("limit", 20)))
        if cmd == "hold":
            seconds = min(max(float(req.get("seconds", 0.0)), 0.0), HOLD_MAX_S)
            self.hold_until = time.monotonic() + seconds if seconds > 0 else 0.0
            return {"pid": os.getpid(), "until": self.hold_until}
        if cmd == "shutdown":
            self.active = False
            if not _defer(self.shutdown):
                self.stop_tracing()
            return {"pid": os.getpid()}
        raise ValueError("unknown command %r" % cmd)

    def growth(self, limit: int) -> Dict[str, Any]:
        if not tracemalloc.is_tracing():
            raise RuntimeError("this process is not tracing (mode %s)" % self.tracer.mode)
        now = time.time()
        snap = tracemalloc.take_snapshot()
        stats: Dict[Tuple[str, int], Tuple[int, int]] = {}
        for st in snap.statistics("lineno"):
            fr = st.traceback[0]
            if fr.filename.startswith(_IGNORE):
                continue
            stats[(fr.filename, fr.lineno)] = (st.size, st.count)
        del snap
        if self._baseline is None:
            self._baseline = (now, stats)
        t0, base = self._baseline
        rows: List[Dict[str, Any]] = []
        for key, (size, count) in stats.items():
            bsize, bcount = base.get(key, (0, 0))
            if size != bsize:
                rows.append({"file": key[0], "line": key[1], "size_diff": size - bsize,
                             "count_diff": count - bcount, "size": size})
        rows.sort(key=lambda r: -r["size_diff"])
        return {"elapsed_s": now - t0, "t": now, "sites": rows[: max(1, limit)]}


_agent: Optional[Agent] = None


def _addresses(req: Dict[str, Any]) -> List[int]:
    """Block addresses of a resolve request: "addrs" (JSON integers) or "addrs_b64" (base64 of
    little-endian uint64, much cheaper for large batches)."""
    if "addrs_b64" in req:
        raw = base64.b64decode(str(req["addrs_b64"]), validate=True)
        if len(raw) % 8 or len(raw) // 8 > _MAX_ADDRS:
            raise ValueError("addrs_b64 must hold at most %d uint64" % _MAX_ADDRS)
        arr = array.array("Q")
        arr.frombytes(raw)
        if sys.byteorder != "little":
            arr.byteswap()
        return arr.tolist()
    addrs = req.get("addrs")
    if not isinstance(addrs, list) or len(addrs) > _MAX_ADDRS:
        raise ValueError("addrs must be a list of at most %d integers" % _MAX_ADDRS)
    if not all(isinstance(a, int) and 0 < a < (1 << 64) for a in addrs):
        raise ValueError("addrs must be positive 64-bit integers")
    return addrs


def _private_dir(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and (st.st_mode & 0o077) == 0


def start(run_dir: str, frames: int, trace_workers: bool) -> str:
    """Start the agent once per process. Returns "" or the reason it did not start."""
    global _agent
    try:
        if _agent is not None and _agent.active:
            return "already running"  # (an agent that memscope detached may be replaced)
        if sys.implementation.name != "cpython" or sys.version_info < (3, 8):
            return "unsupported interpreter"
        if not _private_dir(run_dir):
            return "run directory is not a private (0700, same uid) directory"
        agent = Agent(run_dir, frames, trace_workers)
        try:
            agent.begin()
        except Exception:
            agent.stop_tracing()  # e.g. the socket path is too long: leave nothing running
            raise
        _agent = agent
        os.register_at_fork(
            before=_hook(agent.before_fork),
            after_in_parent=_hook(agent.after_fork_parent),
            after_in_child=_hook(agent.after_fork_child),
        )
        atexit.register(_hook(agent.at_exit))
        return ""
    except Exception as exc:
        return "%s: %s" % (type(exc).__name__, exc)


def start_from_env(environ: Any = None) -> str:
    env = os.environ if environ is None else environ
    try:
        if env.get(ENV_ENABLE) != "1" or not env.get(ENV_RUN_DIR):
            return "not requested"
        frames = int(env.get(ENV_FRAMES, "0") or "0")
        return start(env[ENV_RUN_DIR], frames, env.get(ENV_TRACE_WORKERS) == "1")
    except Exception as exc:
        return "%s: %s" % (type(exc).__name__, exc)


_pending: List[Any] = []


def _caller_of_fork() -> Tuple[Any, int]:
    """(frame, f_lasti) of the Python code that called os.fork(), seen from a fork hook."""
    f: Any = sys._getframe(1)
    while f is not None and f.f_code.co_filename == __file__:
        f = f.f_back
    return (f, f.f_lasti) if f is not None else (None, -1)


def _defer(fn: Any) -> bool:
    """Run fn() from Py_AddPendingCall. Returns False if that is not available."""
    try:
        import ctypes

        if not _pending:
            proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
            api = ctypes.pythonapi
            api.Py_AddPendingCall.argtypes = [proto, ctypes.c_void_p]
            api.Py_AddPendingCall.restype = ctypes.c_int
            calls: List[Any] = []

            def run(_arg: Any) -> int:
                batch = calls[:]
                del calls[:]
                for f in batch:
                    _hook(f)()
                return 0

            _pending.extend([proto(run), calls, api.Py_AddPendingCall])
        callback, calls, add = _pending
        calls.append(fn)
        return bool(add(callback, None) == 0)
    except Exception:
        return False


def _hook(fn: Any) -> Any:
    def run() -> None:
        try:
            fn()
        except Exception:
            pass

    return run
