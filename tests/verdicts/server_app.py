"""A preloading app for real gunicorn and Celery runs (tests/verdicts/test_frameworks.py).

Importing it builds MEMSCOPE_TEST_OBJECTS (env, default 200_000) instances of a small class
(GC-tracked objects) in the process that imports it: gunicorn's master with --preload, the
Celery main process before its prefork pool forks. Each request or task runs gc.collect() in
the worker, which writes the GC header of every inherited object: copied pages that
gc.freeze() before the fork would have kept shared.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any


class Record:
    __slots__ = ("__weakref__", "key", "value")

    def __init__(self, key: int) -> None:
        self.key = key
        self.value = [key]


OBJECTS = [Record(i) for i in range(int(os.environ.get("MEMSCOPE_TEST_OBJECTS", "200000")))]


def collect() -> dict[str, int]:
    found = gc.collect()
    time.sleep(0.3)  # spread concurrent requests and tasks over the workers
    return {"pid": os.getpid(), "collected": found, "objects": len(OBJECTS)}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = json.dumps(collect()).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def make_celery() -> Any:
    from celery import Celery

    broker = os.environ["MEMSCOPE_TEST_BROKER"]
    celery = Celery("server_app", broker=broker, backend=broker)
    celery.conf.worker_hijack_root_logger = False
    celery.conf.worker_prefetch_multiplier = 1
    celery.task(name="server_app.collect")(collect)
    return celery


if os.environ.get("MEMSCOPE_TEST_BROKER"):
    celery = make_celery()
