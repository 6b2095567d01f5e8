"""Labels stay bounded: names not command lines, slots reused lowest-first.

GIVEN argv lists as the kernel reports them (and real processes' /proc/PID/cmdline)
WHEN they become labels
THEN only a short, sanitised program or script name remains, and slots are recycled.
"""

from __future__ import annotations

import sys

import pytest

from memscope.metrics.labels import MAX_COMMAND, SlotAllocator, command_name, sanitise
from memscope.procfs import ProcFS

from ._support import Forker


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["/usr/bin/python3.11", "fixtures/preload_list.py", "--workers", "4"],
         "preload_list.py"),
        (["python3", "-m", "celery", "-A", "proj", "worker", "--concurrency", "4"], "celery"),
        (["/root/.pyenv/versions/3.8.18/bin/python3", "-X", "importtime", "app.py"], "app.py"),
        (["python", "-u", "-W", "ignore", "/srv/app/serve.py"], "serve.py"),
        (["/usr/bin/python3", "-c", "import secrets; print(secrets.token_hex())"], "python3"),
        (["gunicorn: worker [app:app]"], "gunicorn"),
        (["/opt/bin/myapp", "--password=hunter2", "--db=postgres://u:p@h/db"], "myapp"),
        (["/tmp/we\"ird{name}\n"], "we_ird_name"),
        (["/tmp/two words"], "two"),
        ([], "unknown"),
        ([""], "unknown"),
    ],
)
def test_command_name_keeps_a_name_never_the_arguments(argv: list[str], name: str) -> None:
    assert command_name(argv) == name


def test_sanitise_truncates_and_allows_only_safe_characters() -> None:
    label = sanitise("x" * 100 + "é\"\\")
    assert len(label) == MAX_COMMAND
    assert set(label) == {"x"}
    assert sanitise("évil\"}") == "vil"


def test_command_name_of_a_real_process() -> None:
    tree = Forker(sys.executable, "--secret=s3")
    try:
        tree.fork(1)  # answers once the script runs
        cmdline = ProcFS().cmdline(tree.pid)
    finally:
        tree.close()
    assert cmdline[-1] == "--secret=s3"
    assert command_name(cmdline) == "forker.py"


def test_slots_reuse_the_lowest_free_index_per_role() -> None:
    slots = SlotAllocator()
    assert slots.slot("root", "root") == 0
    assert [slots.slot(k, "worker") for k in "abc"] == [0, 1, 2]
    assert slots.slot("x", "descendant") == 0
    slots.release("b")
    slots.release("a")
    assert slots.slot("d", "worker") == 0  # lowest free first
    assert slots.slot("e", "worker") == 1
    assert slots.slot("f", "worker") == 3
    assert slots.slot("c", "worker") == 2  # stable while alive
    slots.retain({"root", "f"})
    assert len(slots) == 2
    assert slots.slot("g", "worker") == 0
    assert slots.slot("f", "worker") == 3


def test_a_recycled_pool_never_needs_more_slots_than_its_peak() -> None:
    slots = SlotAllocator()
    alive: list[int] = []
    seen: set[int] = set()
    for generation in range(50):  # a pool of 4 whose workers are replaced one by one
        while len(alive) < 4:
            key = generation * 10 + len(alive)
            alive.append(key)
            seen.add(slots.slot(key, "worker"))
        slots.release(alive.pop(generation % 4))
    assert seen == {0, 1, 2, 3}
