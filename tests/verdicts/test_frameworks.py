"""Framework awareness on real servers (issue 16, deliverable 6).

GIVEN real gunicorn (--preload, 2 sync workers) and real Celery (prefork pool of 2, Redis
broker from Debian's redis-server on 127.0.0.1, setproctitle installed) serving an app that
preloads 200k GC-tracked objects, where each request or task runs gc.collect() in the worker
WHEN they run under `memscope run` with COW scans, are stopped with SIGTERM, and reported
THEN the processes carry the names users know (gunicorn master/worker with their age,
ForkPoolWorker-N), the gc.freeze advice carries the framework's snippet (gunicorn pre_fork,
Celery worker_init/worker_process_init), and no process gets a "leak" verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from memscope.cli import cli
from memscope.cow.scan import QUICK_TARGET
from tests.check.helpers import MAIN, MiB
from tests.live_recording import query

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def copied_workers(path: Path, at_least: int) -> int:
    """Processes with a full (typed) COW scan showing at least `at_least` bytes copied: the
    advice is built from the types of full scans, which a quick page-level scan lacks."""
    rows = query(path, "SELECT COUNT(DISTINCT process_id) FROM cow_scans"
                       " WHERE copied_bytes >= ? AND target != ?", (at_least, QUICK_TARGET))
    return int(rows[0][0]) if rows else 0


def record_server(path: Path, argv: list[str], env: dict[str, str],
                  drive: Callable[[], None]) -> dict[str, Any]:
    """Run argv under `memscope run`, drive it, wait for full COW scans of 2 workers that copied,
    stop it with SIGTERM (forwarded), and return the JSON report."""
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "run", "-q", "-i", "0.1", "--cow-interval", "1",
         "-o", str(path), "--", *argv],
        cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        drive()
        wait_for(lambda: copied_workers(path, 4 * MiB) >= 2, 90, "COW scans of 2 workers")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = CliRunner().invoke(cli, ["report", str(path), "--format", "json"])
    assert report.exit_code == 0, (err, report.output)
    doc: dict[str, Any] = json.loads(report.stdout)
    return doc


def named(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["pid"]: p.get("framework") or {} for p in doc["processes"]}


def no_leaks(doc: dict[str, Any]) -> None:
    for p in doc["processes"]:
        assert (p.get("leak") or {}).get("verdict") != "leak", p


def gc_snippet(doc: dict[str, Any]) -> dict[str, Any]:
    items = [a for a in doc.get("advice", []) if a["kind"] == "gc-freeze"]
    assert items, doc.get("advice")
    return items[0]


def test_gunicorn(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(HERE))

    def drive() -> None:
        url = f"http://127.0.0.1:{port}/"

        def get(_: int) -> int:
            with urllib.request.urlopen(url, timeout=30) as reply:
                return int(json.loads(reply.read())["pid"])

        def up() -> bool:
            try:
                get(0)
                return True
            except OSError:
                return False

        wait_for(up, 60, "gunicorn")
        with ThreadPoolExecutor(4) as pool:
            pids = set(pool.map(get, range(12)))
        assert len(pids) == 2  # GIVEN: both workers served

    doc = record_server(tmp_path / "gunicorn.memscope",
                        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-b",
                         f"127.0.0.1:{port}", "server_app:app"], env, drive)
    names = named(doc)
    roles = sorted(n.get("name", "") for n in names.values())
    assert roles.count("gunicorn worker") == 2 and "gunicorn master" in roles
    ages = [n["age_s"] for n in names.values() if n.get("name") == "gunicorn worker"]
    assert all(a > 1.0 for a in ages)
    item = gc_snippet(doc)
    assert item["framework"] == "gunicorn" and "def pre_fork(server, worker)" in item["snippet"]
    no_leaks(doc)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    proc = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_for(up, 30, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_celery_prefork(tmp_path: Path, redis_url: str) -> None:
    celery = pytest.importorskip("celery")
    pytest.importorskip("setproctitle")
    env = dict(os.environ, PYTHONPATH=str(HERE), MEMSCOPE_TEST_BROKER=redis_url)
    client = celery.Celery("client", broker=redis_url, backend=redis_url)

    def drive() -> None:
        results = [client.send_task("server_app.collect") for _ in range(8)]
        pids = {r.get(timeout=120)["pid"] for r in results}
        assert len(pids) == 2  # GIVEN: both pool processes ran tasks

    doc = record_server(tmp_path / "celery.memscope",
                        [sys.executable, "-m", "celery", "-A", "server_app:celery", "worker",
                         "--pool", "prefork", "-c", "2", "--loglevel", "WARNING",
                         "--without-heartbeat", "--without-mingle", "--without-gossip"],
                        env, drive)
    names = sorted(n.get("name", "") for n in named(doc).values())
    assert "ForkPoolWorker-1" in names and "ForkPoolWorker-2" in names
    item = gc_snippet(doc)
    assert item["framework"] == "celery" and "worker_process_init" in item["snippet"]
    no_leaks(doc)
    text = CliRunner().invoke(cli, ["report", str(tmp_path / "celery.memscope")]).stdout
    assert "ForkPoolWorker-1" in text


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_multiprocessing_helpers_and_spawned_workers(tmp_path: Path, method: str) -> None:
    """GIVEN a Pool(2) with the spawn or forkserver start method (real processes)
    THEN the resource tracker, the fork server and spawned workers are named, and marked as
    sharing no inherited memory with their parent."""
    path = tmp_path / f"{method}.memscope"
    done = subprocess.run(
        [sys.executable, "-c", MAIN, "run", "-q", "-i", "0.05", "--cow-interval", "0",
         "-o", str(path), "--", sys.executable, str(HERE / "mp_helpers.py"), method],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = CliRunner().invoke(cli, ["report", str(path), "--format", "json"])
    doc = json.loads(report.stdout)
    kinds = [(p.get("framework") or {}).get("kind") for p in doc["processes"]]
    assert "resource_tracker" in kinds
    assert ("forkserver" if method == "forkserver" else "spawned") in kinds
    if method == "forkserver":  # the pool's workers are forked by the server
        names = [(p.get("framework") or {}).get("name") for p in doc["processes"]]
        assert names.count("forkserver worker") == 2
    for p in doc["processes"]:
        info = p.get("framework") or {}
        if info.get("kind") in ("resource_tracker", "forkserver", "spawned"):
            assert info["shares_inherited"] is False
    text = CliRunner().invoke(cli, ["report", str(path)]).stdout
    assert "resource_tracker" in text


def test_uwsgi(tmp_path: Path) -> None:
    uwsgi = shutil.which("uwsgi", path=os.path.dirname(sys.executable)) or shutil.which("uwsgi")
    if uwsgi is None:
        pytest.skip("uwsgi is not installed (the test extra's pyuwsgi wheel provides it)")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(HERE))

    def drive() -> None:
        url = f"http://127.0.0.1:{port}/"

        def get(_: int) -> int:
            with urllib.request.urlopen(url, timeout=30) as reply:
                return int(json.loads(reply.read())["pid"])

        def up() -> bool:
            try:
                get(0)
                return True
            except OSError:
                return False

        wait_for(up, 60, "uwsgi")
        with ThreadPoolExecutor(4) as pool:
            pids = set(pool.map(get, range(12)))
        assert len(pids) == 2

    doc = record_server(tmp_path / "uwsgi.memscope",
                        [uwsgi, "--master", "--processes", "2", "--die-on-term",
                         "--auto-procname", "--http-socket", f"127.0.0.1:{port}",
                         "--wsgi-file", str(HERE / "server_app.py"), "--callable", "app",
                         "--disable-logging"], env, drive)
    names = sorted(n.get("name", "") for n in named(doc).values())
    assert "uWSGI master" in names
    assert "uWSGI worker 1" in names and "uWSGI worker 2" in names
    item = gc_snippet(doc)
    assert item["framework"] == "uwsgi" and "gc.freeze()" in item["snippet"]
    no_leaks(doc)


def test_exec_versus_a_retitled_fork(tmp_path: Path) -> None:
    """GIVEN a parent that forks a child which sets its own title (setproctitle), and starts
    an exec'd child (subprocess)
    THEN only the exec'd one is named exec'd; the retitled fork keeps its COW relation."""
    pytest.importorskip("setproctitle")
    code = ("import os, subprocess, sys, time\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    import setproctitle; setproctitle.setproctitle('myapp: worker 1')\n"
            "    time.sleep(2.5); os._exit(0)\n"
            "subprocess.run([sys.executable, '-c', 'import time; time.sleep(2)'])\n"
            "os.waitpid(pid, 0)\n")
    path = tmp_path / "exec.memscope"
    done = subprocess.run([sys.executable, "-c", MAIN, "run", "-q", "-i", "0.1",
                           "--cow-interval", "0", "-o", str(path), "--", sys.executable, "-c",
                           code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(CliRunner().invoke(cli, ["report", str(path), "--format", "json"]).stdout)
    by_cmd = {" ".join(p["cmdline"]): p.get("framework") for p in doc["processes"]}
    assert by_cmd["myapp: worker 1"] is None
    (execd,) = [f for cmd, f in by_cmd.items() if cmd.endswith("time.sleep(2)")]
    assert execd is not None and execd["kind"] == "exec'd" and not execd["shares_inherited"]
