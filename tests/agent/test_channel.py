"""The channel on both ends: memscope rejects malformed or oversized agent answers; the agent's
server survives malformed, oversized and failing requests."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memscope.agent import socket_path
from memscope.agent._server import Server
from memscope.agent.runtime import start
from memscope.inject import AgentClient, AgentError


def fake_agent(path: str, reply: Callable[[bytes], bytes]) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn, srv:
            data = b""
            while not data.endswith(b"\n"):
                data += conn.recv(4096)
            conn.sendall(reply(data))

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda req: b"not json\n", "malformed agent answer"),
        (lambda req: b"[1, 2]\n", "boolean 'ok'"),
        (lambda req: b'{"id": 99, "ok": true}\n', "expected 1"),
        (lambda req: b'{"id": 1, "ok": false, "error": "boom"}\n', "agent error: boom"),
        (lambda req: b'{"id": 1, "ok": true, "pad": "' + b"x" * 5000 + b'"}\n', "exceeds"),
        (lambda req: b'{"id": 1, "ok": tr', "closed the channel|cannot reach agent"),
        (lambda req: b"\xff\xfe\n", "malformed agent answer"),
    ],
)
def test_client_rejects_bad_answers(
    run_dir: str, reply: Callable[[bytes], bytes], message: str
) -> None:
    path = socket_path(run_dir, 1)
    t = fake_agent(path, reply)
    with pytest.raises(AgentError, match=message), AgentClient(path, 5.0, max_bytes=4096) as c:
        c.request("ping")
    t.join(5)


def test_client_reports_missing_agent_as_error(run_dir: str) -> None:
    with pytest.raises(AgentError, match="cannot reach agent"):
        AgentClient(socket_path(run_dir, 424242), 1.0)


@pytest.fixture
def server(run_dir: str) -> Iterator[str]:
    def handler(req: dict[str, Any]) -> dict[str, Any]:
        if req["cmd"] == "fail":
            raise RuntimeError("handler failed")
        return {"echo": req.get("x")}

    srv = Server(os.path.join(run_dir, "s.sock"), handler, max_request=1024)
    srv.start()
    yield srv.path
    srv.close()
    assert not os.path.exists(srv.path)


def raw(path: str, data: bytes) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


def test_server_answers_errors_and_keeps_serving(server: str) -> None:
    got = raw(server, b'garbage\n{"id": 1}\n{"id": 2, "cmd": "fail"}\n{"id": 3, "cmd": "x", "x": 5}\n')
    assert [g["ok"] for g in got] == [False, False, False, True]
    assert "JSONDecodeError" in got[0]["error"]
    assert "handler failed" in got[2]["error"]
    assert got[3] == {"echo": 5, "id": 3, "ok": True}


def test_server_drops_oversized_request_then_serves_others(server: str) -> None:
    got = raw(server, b"x" * 5000)
    assert got == [{"id": None, "ok": False, "error": "request too large"}]
    with AgentClient(server, 5.0) as c:
        assert c.request("x", x=1)["echo"] == 1


def test_agent_refuses_a_run_dir_that_is_not_private(tmp_path: Any) -> None:
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o755)
    assert "not a private" in start(str(d), 0, False)
