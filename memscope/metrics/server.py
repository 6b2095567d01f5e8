"""The /metrics endpoint: parse `[HOST:]PORT`, bind it safely, serve from a daemon thread.

Binding rules: a bare PORT binds 127.0.0.1. Any other host must be given explicitly and must be
an address of this machine (or a name resolving to one). The wildcards 0.0.0.0 and :: are
allowed only when written out, and a warning says the endpoint is then reachable from the
network. Errors (bad syntax, port in use, address not on this host) are `UsageError`s: one line,
exit status 2, raised before anything is recorded.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from memscope.errors import UsageError
from memscope.metrics.snapshot import Snapshot

__all__ = ["DEFAULT_HOST", "Bind", "MetricsServer", "parse_bind"]

DEFAULT_HOST = "127.0.0.1"
_BRACKETED = re.compile(r"^\[(?P<host>[^\]]+)\]:(?P<port>[^:]+)$")
_HINT = "use PORT (binds 127.0.0.1), HOST:PORT or [IPv6]:PORT, e.g. --serve-metrics 9464"


@dataclass(frozen=True, slots=True)
class Bind:
    host: str
    port: int

    @property
    def wildcard(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise UsageError(f"--serve-metrics {spec!r}: port must be 0-65535", hint=_HINT)
    return int(text)


def parse_bind(spec: str) -> Bind:
    """'9464' -> 127.0.0.1:9464; 'HOST:9464'; '[::1]:9464'. Raises UsageError."""
    spec = spec.strip()
    bracketed = _BRACKETED.match(spec)
    if bracketed:
        return Bind(bracketed["host"], _port(bracketed["port"], spec))
    if ":" not in spec:
        return Bind(DEFAULT_HOST, _port(spec, spec))
    host, _, port = spec.rpartition(":")
    if not host:
        raise UsageError(
            f"--serve-metrics {spec!r}: empty host; to listen on every interface say so"
            " explicitly (0.0.0.0:PORT)", hint=_HINT,
        )
    if ":" in host:
        raise UsageError(f"--serve-metrics {spec!r}: write IPv6 addresses as [ADDR]:PORT",
                         hint=_HINT)
    return Bind(host, _port(port, spec))


class MetricsServer:
    """prometheus_client's WSGI server on `bind`, exposing the snapshot `source()` returns."""

    def __init__(self, bind: Bind, source: Callable[[], Snapshot | None]) -> None:
        # prometheus_client loads here, when metrics are served, not with the CLI.
        from prometheus_client import start_http_server

        from memscope.metrics.collector import registry_for

        self.requested = bind
        try:
            server, thread = start_http_server(
                bind.port, addr=bind.host, registry=registry_for(source)
            )
        except socket.gaierror:
            raise UsageError(
                f"--serve-metrics: cannot resolve host {bind.host!r}", hint=_HINT
            ) from None
        except OSError as exc:
            raise UsageError(_bind_error(bind, exc), hint=_HINT) from None
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        host, port = server.server_address[:2]
        self.bind = Bind(str(host), int(port))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _bind_error(bind: Bind, exc: OSError) -> str:
    where = f"{bind.host}:{bind.port}"
    if exc.errno == errno.EADDRINUSE:
        return f"--serve-metrics {where}: address already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--serve-metrics {where}: {bind.host} is not an address of this host"
    if exc.errno == errno.EACCES:
        return f"--serve-metrics {where}: permission denied (ports below 1024 need privileges)"
    return f"--serve-metrics {where}: cannot listen: {exc.strerror or exc}"
