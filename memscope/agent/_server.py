"""The agent's end of the channel: a unix socket served by one daemon thread.

Runs inside targets: stdlib only, Python 3.8+ syntax, never raises into the host.
Protocol: newline-delimited JSON objects. Request {"id": n, "cmd": str, ...}; response
{"id": n, "ok": true, ...} or {"id": n, "ok": false, "error": str}. No pickle, no network.
The thread can be stopped and restarted around fork() (a forking process should not have extra
threads: CPython 3.12+ warns, and a thread holding a lock at fork time can deadlock the child).
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional

Handler = Callable[[Dict[str, Any]], Dict[str, Any]]
Idle = Callable[[], bool]

_MAX_CLIENTS = 4
_SEND_TIMEOUT_S = 5.0
IDLE_EVERY_S = 1.0


class Server:
    """`idle`, when given, is called by the thread at least every IDLE_EVERY_S seconds; when it
    returns True the thread closes the socket, removes its file and ends (it cannot be
    restarted)."""

    def __init__(
        self, path: str, handler: Handler, max_request: int, idle: Optional[Idle] = None
    ) -> None:
        self.path = path
        self.owner_pid = os.getpid()
        self._handler = handler
        self._max = max_request
        self._idle = idle
        self.closed = False
        self._sock: Optional[socket.socket] = None
        self._wake_r = -1
        self._wake_w = -1
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.closed:
            return
        if self._sock is None:
            if os.path.exists(self.path):
                os.unlink(self.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                sock.bind(self.path)
            finally:
                os.umask(old)
            sock.listen(_MAX_CLIENTS)
            self._sock = sock
        if self._thread is None:
            self._wake_r, self._wake_w = os.pipe()
            t = threading.Thread(target=self._loop, name="memscope-agent", daemon=True)
            self._thread = t
            t.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (the socket keeps listening; pending connects wait in the backlog)."""
        t = self._thread
        if t is None:
            return
        before = _threads()
        try:
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")
        except OSError:
            pass
        t.join(timeout)
        # join() returns when the thread clears its tid, a moment before the kernel drops it
        # from the thread count that os.fork() checks (3.12+ warns when it is above 1).
        deadline = time.monotonic() + 0.5
        while _threads() >= before > 0 and time.monotonic() < deadline:
            time.sleep(0.0002)
        self._thread = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = -1

    def abandon(self) -> None:
        """In a forked child: drop the parent's socket and thread state without touching the
        parent's socket file."""
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._sock = None
        self._thread = None

    def close(self) -> None:
        self.stop()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if os.getpid() == self.owner_pid:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    # -- thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        sock = self._sock
        wake = self._wake_r
        if sock is None:
            return
        clients: Dict[socket.socket, bytearray] = {}
        timeout = IDLE_EVERY_S if self._idle is not None else None
        next_idle = time.monotonic() + IDLE_EVERY_S
        try:
            while True:
                waits: List[Any] = [sock, wake, *clients]
                ready, _, _ = select.select(waits, [], [], timeout)
                if wake in ready:
                    return
                if self._idle is not None and time.monotonic() >= next_idle:
                    next_idle = time.monotonic() + IDLE_EVERY_S
                    if self._idle():
                        self._close_from_thread(sock)
                        return
                for r in ready:
                    if r is sock:
                        self._accept(sock, clients)
                    elif isinstance(r, socket.socket) and not self._read(r, clients[r]):
                        del clients[r]
                        r.close()
        except Exception:
            return
        finally:
            for c in clients:
                c.close()

    def _close_from_thread(self, sock: socket.socket) -> None:
        self.closed = True
        try:
            sock.close()
        except OSError:
            pass
        if os.getpid() == self.owner_pid:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        wake = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1  # before closing: stop() must never write to them
        for fd in wake:
            try:
                os.close(fd)
            except OSError:
                pass

    def _accept(self, sock: socket.socket, clients: Dict[socket.socket, bytearray]) -> None:
        conn, _ = sock.accept()
        if len(clients) >= _MAX_CLIENTS:
            conn.close()
            return
        conn.settimeout(_SEND_TIMEOUT_S)
        clients[conn] = bytearray()

    def _read(self, conn: socket.socket, buf: bytearray) -> bool:
        try:
            data = conn.recv(1 << 16)
        except OSError:
            return False
        if not data:
            return False
        buf += data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > self._max:
                    self._send(conn, {"id": None, "ok": False, "error": "request too large"})
                    return False
                return True
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            if not self._send(conn, self._answer(line)):
                return False

    def _answer(self, line: bytes) -> Dict[str, Any]:
        rid: Any = None
        try:
            req = json.loads(line.decode("utf-8"))
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise ValueError("request must be an object with a string 'cmd'")
            rid = req.get("id")
            resp = self._handler(req)
            resp["id"] = rid
            resp["ok"] = True
            return resp
        except Exception as exc:
            return {"id": rid, "ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}

    def _send(self, conn: socket.socket, msg: Dict[str, Any]) -> bool:
        try:
            conn.sendall(json.dumps(msg, separators=(",", ":")).encode("utf-8") + b"\n")
            return True
        except (OSError, TypeError, ValueError):
            return False



def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0
