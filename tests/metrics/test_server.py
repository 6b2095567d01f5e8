"""The endpoint binds loopback by default and refuses bad addresses with one line, exit 2.

GIVEN --serve-metrics values, busy ports and addresses that are not this host's
WHEN memscope parses them or binds them
THEN a bare port means 127.0.0.1, mistakes are UsageErrors (exit 2) raised before `run`
starts its command, and a served endpoint answers in the Prometheus text format.
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from memscope.cli import cli
from memscope.errors import UsageError
from memscope.metrics import Bind, MetricsServer, Snapshot, parse_bind

from ._support import parse


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("spec", "bind"),
    [
        ("9464", Bind("127.0.0.1", 9464)),
        ("localhost:9464", Bind("localhost", 9464)),
        ("127.0.0.2:0", Bind("127.0.0.2", 0)),
        ("[::1]:9464", Bind("::1", 9464)),
        ("0.0.0.0:9464", Bind("0.0.0.0", 9464)),
    ],
)
def test_parse_bind(spec: str, bind: Bind) -> None:
    assert parse_bind(spec) == bind


@pytest.mark.parametrize("spec", [":9464", "http", "70000", "-1", "::1:9464", "host:", "1.2.3.4:x"])
def test_parse_bind_rejects(spec: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_bind(spec)
    assert "\n" not in err.value.message
    assert err.value.exit_code == 2


def test_only_explicit_wildcards_count_as_all_interfaces() -> None:
    assert parse_bind("0.0.0.0:1").wildcard
    assert parse_bind("[::]:1").wildcard
    assert not parse_bind("1").wildcard
    assert not parse_bind("localhost:1").wildcard


def test_port_in_use_is_a_usage_error(busy_port: int) -> None:
    with pytest.raises(UsageError, match="already in use"):
        MetricsServer(Bind("127.0.0.1", busy_port), lambda: None)


def test_an_address_of_another_host_is_a_usage_error() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a local interface.
    with pytest.raises(UsageError, match="not an address of this host"):
        MetricsServer(Bind("192.0.2.1", 0), lambda: None)


def test_served_snapshot_and_close() -> None:
    snapshot = Snapshot(t=1.0, tree={"workers": 3}, ticks=7, mode="attach")
    server = MetricsServer(parse_bind("0"), lambda: snapshot)
    try:
        assert server.bind.host == "127.0.0.1"
        assert server.bind.port > 0
        with urllib.request.urlopen(server.bind.url, timeout=5) as response:
            body = response.read().decode()
        series = parse(body)
        assert series[("memscope_tree_workers", ())] == 3
        assert series[("memscope_sampler_ticks_total", ())] == 7
        assert series[("memscope_info", (("mode", "attach"), ("version", "0.1.0")))] == 1
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.bind.url, timeout=5)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_ipv6_loopback() -> None:
    server = MetricsServer(parse_bind("[::1]:0"), lambda: None)
    try:
        assert server.bind.url.startswith("http://[::1]:")
        with urllib.request.urlopen(server.bind.url, timeout=5) as response:
            assert b"memscope_info" in response.read()
    finally:
        server.close()


def test_run_with_a_busy_port_fails_before_starting_the_command(
    busy_port: int, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    result = CliRunner().invoke(cli, [
        "run", "-o", str(tmp_path / "r.memscope"), "--serve-metrics", str(busy_port), "--",
        sys.executable, "-c", f"open({str(marker)!r}, 'w')",
    ])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"memscope: error: --serve-metrics 127.0.0.1:{busy_port}: address already in use"
    )
    assert [line for line in lines if not line.startswith("hint:")] == lines[:1]
    assert not marker.exists()
    assert not (tmp_path / "r.memscope").exists()


def test_attach_with_an_empty_host_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["attach", "1", "--serve-metrics", ":9464"])
    assert result.exit_code == 2
    assert result.stderr.startswith("memscope: error: --serve-metrics ':9464': empty host")


class _Recorder:
    """Stands in for MetricsServer so a wildcard bind can be checked without listening."""

    made: ClassVar[list[_Recorder]] = []

    def __init__(self, bind: Bind, source: object) -> None:
        self.bind = bind
        self.closed = False
        _Recorder.made.append(self)

    def close(self) -> None:
        self.closed = True


def test_explicit_wildcard_is_allowed_with_a_warning_and_closed_at_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from memscope.metrics import cli as metrics_cli

    monkeypatch.setattr(metrics_cli, "MetricsServer", _Recorder)
    _Recorder.made.clear()
    # PID 2**22 + 1 is above the kernel's pid_max: attach fails after the option was handled.
    result = CliRunner().invoke(cli, ["attach", str(2**22 + 1), "--serve-metrics", "0.0.0.0:9464"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == ("memscope: warning: --serve-metrics 0.0.0.0:9464: listening on every"
                        " interface; the endpoint is reachable from the network")
    assert lines[-1].startswith("memscope: error: no process with PID")
    assert [(s.bind, s.closed) for s in _Recorder.made] == [(Bind("0.0.0.0", 9464), True)]
