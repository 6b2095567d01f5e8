"""Roles from the fork structure on real trees started through wrappers (issue 13, item 3).

GIVEN fixtures/preload_list.py (a Python master that forks 4 workers) started by a shell
script that runs it as a child (not exec), through a pyenv shim (which execs), or with
`sh -c` and two commands
WHEN recorded with `memscope run` and reported as JSON, and judged by `memscope check`
THEN the Python master is the master (or the root, when the shell exec'd it), the shell is a
wrapper, its 4 forked children are the workers, and `worker.*` / `root.*` / `tree.workers`
select those processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from memscope.cli import cli
from tests.check.helpers import MAIN

REPO = Path(__file__).resolve().parents[2]
PRELOAD = REPO / "fixtures" / "preload_list.py"
ARGS = "--workers 4 --size 200000 --hold 1.0"
SHIM = Path("/root/.pyenv/shims/python3")


def record(tmp_path: Path, argv: list[str]) -> dict[str, Any]:
    out = tmp_path / "rec.memscope"
    done = subprocess.run([sys.executable, "-c", MAIN, "run", "-q", "-i", "0.1", "-o", str(out),
                           "--", *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    report = CliRunner().invoke(cli, ["report", str(out), "--format", "json"])
    assert report.exit_code == 0, report.output
    doc: dict[str, Any] = json.loads(report.stdout)
    doc["path"] = str(out)
    return doc


def by_role(doc: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [p for p in doc["processes"] if p["role"] == role]


def runs_preload(p: dict[str, Any]) -> bool:
    """A Python process running the fixture (not a shim's bash naming it in its arguments)."""
    argv = p["cmdline"]
    return (len(argv) > 1 and os.path.basename(argv[0]).startswith("python")
            and argv[1].endswith("preload_list.py"))


def assert_master_and_workers(doc: dict[str, Any], master_role: str) -> dict[str, Any]:
    masters = [p for p in doc["processes"] if p["role"] in ("root", "master")]
    assert len(masters) == 1, [(p["pid"], p["role"], p["cmdline"]) for p in doc["processes"]]
    master = masters[0]
    assert master["role"] == master_role and runs_preload(master), master
    workers = by_role(doc, "worker")
    assert len(workers) == 4, [(p["pid"], p["role"], p["cmdline"]) for p in doc["processes"]]
    assert all(w["ppid"] == master["pid"] and runs_preload(w) for w in workers), workers
    others = [p for p in doc["processes"] if runs_preload(p) and p not in workers]
    assert others == [master], others  # no Python process of the app is left "descendant"
    return master


def check(doc: dict[str, Any], *rules: str, allow_missing: bool = False) -> dict[str, Any]:
    argv = ["check", doc["path"], "--format", "json", *(["--allow-missing"] * allow_missing)]
    for rule in rules:
        argv += ["--rule", rule]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def script(tmp_path: Path, python: str) -> Path:
    path = tmp_path / "start.sh"
    path.write_text(f'#!/bin/sh\ncd "$(dirname "$0")"\n{python} {PRELOAD} {ARGS}\necho done\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("python", ["venv", "pyenv-shim"])
def test_shell_script_wrapper(tmp_path: Path, python: str) -> None:
    if python == "pyenv-shim" and not SHIM.exists():
        pytest.skip(f"no pyenv shim at {SHIM}")
    exe = sys.executable if python == "venv" else str(SHIM)
    doc = record(tmp_path, [str(script(tmp_path, exe))])
    root = doc["processes"][0]
    assert root["role"] == "wrapper" and root["cmdline"][-1].endswith("start.sh"), root
    master = assert_master_and_workers(doc, "master")
    assert master["ppid"] == root["pid"]
    helpers = [p for p in doc["processes"] if not runs_preload(p) and p is not root]
    assert helpers and all(p["role"] == "descendant" for p in helpers)  # dirname, shim's bash
    verdicts = check(doc, "tree.workers == 4", "root.uss.peak <= 1GiB",
                     "worker.uss.peak <= 1GiB")
    pids = {w["pid"] for w in by_role(doc, "worker")}
    text = json.dumps(verdicts)
    assert f"master pid {master['pid']}" in text
    assert any(f"worker pid {pid}" in text for pid in pids), text


@pytest.mark.parametrize("order", ["true-first", "true-last"])
def test_sh_c_with_two_commands(tmp_path: Path, order: str) -> None:
    run = f"{sys.executable} {PRELOAD} {ARGS}"
    doc = record(tmp_path, ["sh", "-c", f"true; {run}" if order == "true-first"
                            else f"{run}; true"])
    root = doc["processes"][0]
    if runs_preload(root):  # the shell exec'd its last command: python is the root
        assert order == "true-first"
        assert_master_and_workers(doc, "root")
    else:
        assert root["role"] == "wrapper", root
        assert_master_and_workers(doc, "master")
    trues = [p for p in doc["processes"] if p["cmdline"][:1] == ["true"]]
    assert all(p["role"] == "descendant" for p in trues), trues


def test_environment_wrapper_env(tmp_path: Path) -> None:
    """`env VAR=1 python ...` execs: the root is python itself, no wrapper left."""
    doc = record(tmp_path, ["env", "APP_ENV=1", sys.executable, str(PRELOAD), *ARGS.split()])
    assert not by_role(doc, "wrapper")
    assert_master_and_workers(doc, "root")
    assert os.path.basename(doc["processes"][0]["cmdline"][0]).startswith("python")


def test_gunicorn_through_a_script_recycling_workers(tmp_path: Path) -> None:
    """A start script (trap + wait, as real entrypoints do) runs gunicorn --max-requests 10:
    the script is a wrapper, gunicorn's master the master, every worker (the replacements
    too) a worker."""
    pytest.importorskip("gunicorn")
    port = free_port()
    start = tmp_path / "start.sh"
    start.write_text(
        "#!/bin/sh\n"
        f'{sys.executable} -m gunicorn --preload -w 2 --max-requests 10 -b 127.0.0.1:{port}'
        f' --chdir {REPO / "fixtures"} gunicorn_app:app &\n'
        'pid=$!\ntrap \'kill -TERM "$pid"; wait "$pid"\' INT TERM HUP\nwait "$pid"\n')
    start.chmod(start.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "gunicorn.memscope"
    env = dict(os.environ, MEMSCOPE_FIXTURE_SIZE="200000")
    proc = subprocess.Popen([sys.executable, "-c", MAIN, "run", "-q", "-i", "0.1", "-o",
                             str(out), "--", str(start)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    served: list[int] = []
    try:
        url = f"http://127.0.0.1:{port}/?count=1000"
        deadline = time.monotonic() + 90
        while not served and time.monotonic() < deadline:
            try:
                served.append(get_pid(url))
            except OSError:
                time.sleep(0.2)
        assert served, "gunicorn did not answer within 90 s"
        for _ in range(59):  # bounded: 60 requests, each with a timeout
            served.append(get_pid(url))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(set(served)) > 2, served  # GIVEN: workers were recycled (10 requests each)
    report = CliRunner().invoke(cli, ["report", str(out), "--format", "json"])
    assert report.exit_code == 0, (err, report.output)
    doc: dict[str, Any] = json.loads(report.stdout)
    rows = {p["pid"]: p for p in doc["processes"]}
    assert rows[doc["processes"][0]["pid"]]["role"] == "wrapper"
    masters = by_role(doc, "master")
    assert len(masters) == 1 and "gunicorn" in " ".join(masters[0]["cmdline"]), masters
    workers = {p["pid"] for p in by_role(doc, "worker")}
    assert set(served) <= workers, (served, sorted(workers))
    assert all(rows[w]["ppid"] == masters[0]["pid"] for w in workers)
    named = {p["pid"]: (p.get("framework") or {}).get("name") for p in doc["processes"]}
    assert named[masters[0]["pid"]] == "gunicorn master"
    assert all(named[w] == "gunicorn worker" for w in workers), named
    doc["path"] = str(out)
    # (a replacement worker forked just before the stop may have no full sample yet)
    verdicts = json.dumps(check(doc, "worker.uss.peak <= 1GiB", "root.uss.peak <= 1GiB",
                                allow_missing=True))
    assert f"master pid {masters[0]['pid']}" in verdicts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_pid(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return int(json.loads(reply.read())["pid"])


def test_a_launcher_that_waits_is_a_wrapper(tmp_path: Path) -> None:
    """The shape of `uv run` / `poetry run` (neither is installed here): a Python process that
    runs the program as a child and waits for it."""
    launcher = ("import subprocess, sys; "
                f"sys.exit(subprocess.call([sys.executable, {str(PRELOAD)!r}, *{ARGS.split()!r}]))")
    doc = record(tmp_path, [sys.executable, "-c", launcher])
    root = doc["processes"][0]
    assert root["role"] == "wrapper" and root["cmdline"][1] == "-c", root
    master = assert_master_and_workers(doc, "master")
    assert master["ppid"] == root["pid"]
