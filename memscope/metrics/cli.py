"""`--serve-metrics [HOST:]PORT` for `run` and `attach`: one decorator, one call.

The option's callback binds the endpoint while the command line is parsed, so a port in use
or a foreign address fails (exit 2) before `run` starts the command or `attach` records
anything. The server is closed when the command's click context closes. The option's value
(the command's `serve_metrics` parameter) is the `MetricsFeed` to pass, explicitly, in
`FeatureOptions(metrics=...)`; it feeds the endpoint after every tick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from memscope.metrics.feed import MetricsFeed
from memscope.metrics.server import MetricsServer, parse_bind
from memscope.metrics.snapshot import SnapshotBox

__all__ = ["serve_metrics_option"]

F = TypeVar("F", bound=Callable[..., Any])


def _start(ctx: click.Context, _param: click.Parameter, value: str | None) -> MetricsFeed | None:
    if value is None:
        return None
    bind = parse_bind(value)
    if bind.wildcard:
        click.echo(
            f"memscope: warning: --serve-metrics {value}: listening on every interface;"
            " the endpoint is reachable from the network", err=True,
        )
    box = SnapshotBox()
    server = MetricsServer(bind, box.get)
    ctx.call_on_close(server.close)
    click.echo(f"memscope: serving metrics on {server.bind.url}", err=True)
    return MetricsFeed(box, mode=ctx.info_name or "")


def serve_metrics_option(func: F) -> F:
    return click.option(
        "--serve-metrics",
        "serve_metrics",
        metavar="[HOST:]PORT",
        default=None,
        callback=_start,
        help="Serve Prometheus metrics of the tree while recording (PORT alone binds"
        " 127.0.0.1; 0.0.0.0:PORT must be asked for explicitly).",
    )(func)

