"""pytest plugin: memory limits on the processes a test forks or spawns.

    @pytest.mark.memscope(worker_uss="64MiB", cow_copied="4MiB", leak_slope="1MiB/min")
    def test_pool(): ...

    @pytest.mark.memscope("tree.workers == 4", "worker.uss.growth <= 1MiB")
    def test_prefork(memscope_recording): ...

How it measures: for a marked test (or one using the `memscope_recording` fixture) the plugin
starts `memscope attach <pytest's pid>` as a separate sampler process before the test body and
stops it (SIGINT) after. The pytest process is the tree's root, the processes the test forks
or spawns are its workers (memscope.roles: also a multiprocessing fork server's children), so
`worker.*` limits never include pytest's own memory; `tree.*` ones do. The sampler runs out
of process on purpose: a sampler thread inside pytest would make every fork in the test a
fork of a multi-threaded process (deadlock-prone, and a DeprecationWarning on 3.12+) and would
compete for the GIL. The sampler excludes itself; children pytest already had before the
test are measured too.

A broken limit fails the test (pytest summary, --junitxml) with the check table; a limit on a
metric the recording lacks (COW, leaks) fails it too, never passes silently. If the sampler
cannot read pytest's /proc files (hardened /proc, ptrace rules) the test fails with why.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from memscope.analysis.summary import Summary
    from memscope.recording import Recording

__all__ = ["LIMIT_KEYWORDS", "MemscopeRecording", "rules_from_marker"]

#: Marker keyword -> rule template ({} is the keyword's value).
LIMIT_KEYWORDS = {
    "worker_uss": "worker.uss.peak <= {}",
    "worker_pss": "worker.pss.peak <= {}",
    "worker_rss": "worker.rss.peak <= {}",
    "uss_growth": "worker.uss.growth <= {}",
    "tree_pss": "tree.pss.peak <= {}",
    "cow_copied": "worker.cow.copied <= {}",
    "cow_copied_ratio": "worker.cow.copied_ratio <= {}",
    "leak_slope": "worker.leak.slope <= {}",
    "workers": "tree.workers == {}",
}
_MAIN = "import sys; from memscope.cli import main; sys.argv[0] = 'memscope'; main()"
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 30.0
_KEY = pytest.StashKey["MemscopeRecording"]()
_FAILED = pytest.StashKey[bool]()


class MeasurementImpossible(Exception):
    pass


def rules_from_marker(marker: pytest.Mark) -> list[str]:
    unknown = sorted(set(marker.kwargs) - set(LIMIT_KEYWORDS))
    if unknown:
        raise ValueError(
            f"unknown memscope limit(s) {', '.join(unknown)} (known: {', '.join(LIMIT_KEYWORDS)})"
        )
    rules = [str(r) for r in marker.args]
    rules += [LIMIT_KEYWORDS[k].format(v) for k, v in marker.kwargs.items()]
    return rules


class MemscopeRecording:
    """A recording of pytest's process tree while one test runs (the `memscope_recording`
    fixture). `finish()` stops the sampler and opens the recording."""

    def __init__(self, directory: str, name: str, interval: float,
                 attach_options: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.path = os.path.join(directory, f"{name}.memscope")
        self.interval = interval
        self.attach_options = attach_options
        self._proc: subprocess.Popen[bytes] | None = None
        self._recording: Recording | None = None

    def start(self) -> None:
        argv = [sys.executable, "-c", _MAIN, "attach", str(os.getpid()), "-o", self.path, "--force",
                "-i", str(self.interval), "-q", *self.attach_options]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self._proc = proc
        deadline = time.monotonic() + _START_TIMEOUT_S
        # The file exists once the sampler is about to take its first tick.
        while not os.path.exists(self.path):
            if proc.poll() is not None:
                self._proc = None
                raise MeasurementImpossible(self._stderr(proc))
            if time.monotonic() > deadline:
                self._kill()
                raise MeasurementImpossible(f"sampler did not start in {_START_TIMEOUT_S:g}s")
            time.sleep(0.005)
        time.sleep(self.interval)  # let the first tick see the tree as it is

    @staticmethod
    def _stderr(proc: subprocess.Popen[bytes]) -> str:
        err = proc.communicate()[1].decode(errors="replace").strip().splitlines()
        lines = [ln.removeprefix("memscope: error: ") for ln in err
                 if "error" in ln or "hint" in ln]
        return "; ".join(lines or err[-2:]) or f"sampler exited with status {proc.returncode}"

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def stop(self) -> str:
        """Stop sampling (idempotent); returns the recording's path."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self.path
        from memscope.session import stop_process  # memscope loads only when a test uses it

        stop_process(proc, signal.SIGINT, _STOP_TIMEOUT_S)
        if proc.returncode != 0:
            raise MeasurementImpossible(self._stderr(proc))
        assert proc.stderr is not None
        proc.stderr.close()
        return self.path

    def finish(self) -> Recording:
        """Stop sampling and return the recording (opened once, closed after the test)."""
        if self._recording is None:
            from memscope.recording import open_recording

            self._recording = open_recording(self.stop())
        return self._recording

    def summary(self) -> Summary:
        from memscope.analysis.summary import build_summary

        return build_summary(self.finish())

    def close(self, keep: bool) -> None:
        with contextlib.suppress(MeasurementImpossible):
            self.stop()
        if self._recording is not None:
            self._recording.close()
            self._recording = None
        if not keep:
            shutil.rmtree(self.directory, ignore_errors=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memscope", "memory limits on forked processes (memscope)")
    group.addoption("--memscope-dir", default=None, metavar="DIR",
                    help="keep every test's recording in DIR (default: only failed tests',"
                    " in a temporary directory)")
    parser.addini("memscope_interval", "seconds between samples (default 0.05)", default="0.05")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "memscope(*rules, worker_uss=, worker_pss=, worker_rss=, uss_growth=, tree_pss=,"
        " cow_copied=, cow_copied_ratio=, leak_slope=, workers=): memory limits on the"
        " processes the test forks or spawns (memscope check rules)",
    )


def _attach_options(rules: list[str]) -> tuple[str, ...]:  # rule texts or marker keywords
    """COW limits need COW scans: ask `attach` for them when this memscope has them."""
    from memscope.cli.attach import command as attach

    if not any(p.name == "cow_interval" for p in attach.params):
        return ()
    wants_cow = any("cow" in rule for rule in rules)
    return ("--cow-interval", "0.5" if wants_cow else "0")  # no scans nobody asked for


def _new_recording(item: pytest.Item) -> MemscopeRecording:
    keep_dir = item.config.getoption("memscope_dir")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in item.name)[:80]
    if keep_dir:
        directory = os.path.join(os.path.abspath(keep_dir), f"{name}-{os.getpid()}")
        os.makedirs(directory, exist_ok=True)
    else:
        directory = tempfile.mkdtemp(prefix="memscope-pytest-")
    marker = item.get_closest_marker("memscope")
    rules = [*marker.args, *marker.kwargs] if marker else []  # names suffice to pick options
    interval = float(item.config.getini("memscope_interval"))
    rec = MemscopeRecording(directory, name, interval, _attach_options([str(r) for r in rules]))
    try:
        rec.start()
    except MeasurementImpossible as exc:
        rec.close(keep=False)
        pytest.fail(f"memscope: cannot measure this test: {exc}", pytrace=False)
    item.stash[_KEY] = rec
    return rec


@pytest.fixture
def memscope_recording(request: pytest.FixtureRequest) -> MemscopeRecording:
    """The recording of this test's process tree; `.finish()` returns it (a Recording)."""
    assert isinstance(request.node, pytest.Item)
    return _new_recording(request.node)


def _judge(item: pytest.Item, rec: MemscopeRecording, rules: list[str]) -> None:
    from memscope.check import check_recordings
    from memscope.check.output import render_text
    from memscope.errors import MemscopeError

    try:
        path = rec.stop()
        report = check_recordings([path], rules)
    except MeasurementImpossible as exc:
        pytest.fail(f"memscope: cannot measure this test: {exc}", pytrace=False)
    except MemscopeError as exc:
        pytest.fail(f"memscope: {exc.message}", pytrace=False)
    if report.exit_code == 0:
        return
    out = io.StringIO()
    render_text(report, out)
    lines = [r.describe() + (f" (hint: {r.hint})" if r.hint else "")
             for r in report.results if r.verdict != "pass"]
    item.stash[_FAILED] = True
    pytest.fail("memscope: " + "\n".join(lines) + f"\n\n{out.getvalue()}recording: {path}",
                pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("memscope")
    rec = item.stash.get(_KEY, None)
    if marker is None:
        return (yield)
    try:
        rules = rules_from_marker(marker)
    except ValueError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"memscope marker: {problem}", pytrace=False)
    if rec is None:
        rec = _new_recording(item)
    result = yield
    _judge(item, rec, rules)
    return result


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    rec = item.stash.get(_KEY, None)
    if rec is not None:
        keep = bool(item.config.getoption("memscope_dir")) or item.stash.get(_FAILED, False)
        rec.close(keep=keep)
