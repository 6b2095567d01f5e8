"""memscope's end of the agent channel: a strict JSON-lines client over a unix socket.

Every answer is checked before use: one line, at most `max_bytes`, valid UTF-8 JSON object,
echoing our request id, with a boolean `ok`. Anything else raises AgentError; nothing from an
agent is ever evaluated or unpickled.
"""

from __future__ import annotations

import json
import os
import socket
import time
from types import TracebackType
from typing import Any

from memscope.agent import socket_path
from memscope.inject.errors import AgentError

__all__ = ["MAX_RESPONSE_BYTES", "AgentClient", "agent_pids", "wait_for_agent"]

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
RETRIES = 3


class _Dropped(Exception):
    """The agent closed the connection without answering."""


class AgentClient:
    def __init__(
        self, path: str, timeout: float = 10.0, max_bytes: int = MAX_RESPONSE_BYTES
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._id = 0
        self._buf = bytearray()
        self._sock = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            msg = exc.strerror or str(exc)
            raise AgentError(f"cannot reach agent at {self.path}: {msg}") from None
        return sock

    @classmethod
    def for_pid(cls, run_dir: str, pid: int, timeout: float = 10.0) -> AgentClient:
        return cls(socket_path(run_dir, pid), timeout)

    def request(self, cmd: str, **params: Any) -> dict[str, Any]:
        """Send one command and return the checked answer. Every command is idempotent, so a
        channel the agent dropped (it closes connections while its process forks) is
        re-opened and the command re-sent, up to RETRIES times."""
        for attempt in range(RETRIES + 1):
            self._id += 1
            msg = {"id": self._id, "cmd": cmd, **params}
            try:
                self._sock.sendall(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
                line = self._read_line()
            except (OSError, _Dropped) as exc:
                if attempt == RETRIES:
                    raise AgentError(f"agent channel {self.path}: {exc}") from None
                time.sleep(0.05 * (attempt + 1))
                self._sock.close()
                self._buf.clear()
                self._sock = self._connect()
                continue
            return self._check(line)
        raise AssertionError("unreachable")

    def _read_line(self) -> bytes:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return line
            if len(self._buf) > self.max_bytes:
                raise AgentError(f"agent answer exceeds {self.max_bytes} bytes; rejected")
            chunk = self._sock.recv(1 << 20)
            if not chunk:
                raise _Dropped("agent closed the channel before answering")
            self._buf += chunk

    def _check(self, line: bytes) -> dict[str, Any]:
        if len(line) > self.max_bytes:
            raise AgentError(f"agent answer exceeds {self.max_bytes} bytes; rejected")
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AgentError(f"malformed agent answer: {exc}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
            raise AgentError("malformed agent answer: not an object with a boolean 'ok'")
        if obj.get("id") != self._id:
            raise AgentError(f"agent answered request {obj.get('id')!r}, expected {self._id}")
        if not obj["ok"]:
            raise AgentError(f"agent error: {str(obj.get('error', '?'))[:500]}")
        return obj

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def agent_pids(run_dir: str) -> list[int]:
    """Pids that have (or had) an agent socket in run_dir."""
    out = []
    for name in os.listdir(run_dir):
        if name.startswith("agent-") and name.endswith(".sock") and name[6:-5].isdigit():
            out.append(int(name[6:-5]))
    return sorted(out)


def wait_for_agent(run_dir: str, pid: int, timeout: float) -> dict[str, Any]:
    """Poll until the agent of `pid` answers a ping; raise AgentError after `timeout`."""
    deadline = time.monotonic() + timeout
    last = "no socket yet"
    while True:
        try:
            with AgentClient.for_pid(run_dir, pid, timeout=max(0.5, timeout)) as c:
                return c.request("ping")
        except AgentError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise AgentError(f"agent of pid {pid} did not answer within {timeout:g}s ({last})")
        time.sleep(0.05)
