"""The pytest plugin measures the processes a test forks, with real forking tests (pytester).

GIVEN tests that fork workers which touch a known number of MiB
WHEN they carry @pytest.mark.memscope limits
THEN a broken limit fails the test in pytest's summary and in --junitxml, a kept limit passes,
a limit on a metric the recording lacks fails with the reason, and a test whose process cannot
be read by the sampler fails saying so.
"""

from __future__ import annotations

import os
import shutil

import pytest
from lxml import etree

from tests.check.helpers import DATA

pytest_plugins = ["pytester"]

FORKING = '''
import os, time
import pytest

MiB = 1 << 20

def fork_workers(n, mib, hold=0.4):
    """n children, each writing `mib` MiB of fresh pages, then holding them."""
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            buf = bytearray(mib * MiB)
            for i in range(0, len(buf), 4096):
                buf[i] = 1
            time.sleep(hold)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
'''


@pytest.mark.slow  # end to end; `make test-load` runs it beside a CPU hog
def test_limits_on_forked_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FORKING + '''
@pytest.mark.memscope(worker_uss="24MiB", workers=2)
def test_small_workers_pass():
    fork_workers(2, 8)

@pytest.mark.memscope(worker_uss="16MiB")
def test_big_worker_fails():
    fork_workers(1, 40)

@pytest.mark.memscope("worker.uss.peak <= 64MiB", cow_copied="4MiB")
def test_cow_limit_gets_cow_scans():
    fork_workers(1, 1)  # 1 MiB of new pages: new private, not copied

@pytest.mark.memscope(worker_usage="1MiB")
def test_unknown_limit():
    pass

def test_unmarked_is_not_measured():
    fork_workers(1, 1, hold=0)
''')
    junit = pytester.path / "junit.xml"
    kept = pytester.path / "recordings"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={junit}",
                                           f"--memscope-dir={kept}")
    result.assert_outcomes(passed=3, failed=2)
    assert len(list(kept.glob("test_big_worker_fails-*/test_big_worker_fails.memscope"))) == 1
    result.stdout.fnmatch_lines([
        "*_ test_big_worker_fails _*", "memscope: worker.uss.peak <= 16MiB broken: measured *",
        "*_ test_unknown_limit _*", "memscope marker: unknown memscope limit(s) worker_usage*",
        "FAILED *::test_big_worker_fails - Failed: mem*",
    ])
    assert "During handling" not in result.stdout.str()
    # the failing worker's peak is reported: 40 MiB written, plus its interpreter's own pages
    line = next(ln for ln in result.stdout.lines if "worker.uss.peak <= 16MiB broken" in ln)
    measured = float(line.split("measured ")[1].split(" MiB")[0])
    assert 40 <= measured < 48
    doc = etree.parse(str(junit))
    etree.XMLSchema(etree.parse(str(DATA / "junit.xsd"))).assertValid(doc)
    failures = {c.get("name"): c.find("failure") for c in doc.iter("testcase")}
    assert failures["test_small_workers_pass"] is None
    assert "worker.uss.peak <= 16MiB broken" in failures["test_big_worker_fails"].get("message")


def test_fixture_gives_the_recording(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FORKING + '''
from memscope.recording import Recording

def test_three_workers(memscope_recording):
    fork_workers(3, 4)
    rec = memscope_recording.finish()
    assert isinstance(rec, Recording)
    summary = memscope_recording.summary()
    root = [p for p in summary.processes if p.role == "root"]
    assert [p.pid for p in root] == [os.getpid()]          # pytest itself is the root ...
    assert len(summary.workers) == 3                        # ... and not among the workers
    assert all(4 * MiB <= p.peak.uss < 12 * MiB for p in summary.workers)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "recording: " not in result.stdout.str()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop CAP_SYS_PTRACE")
def test_unreadable_process_is_a_clear_failure(pytester: pytest.Pytester) -> None:
    """Without CAP_SYS_PTRACE, a non-dumpable process's /proc/PID/smaps_rollup is unreadable
    even to its own uid (as in hardened containers)."""
    pytester.makeconftest('''
import ctypes
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
''')
    pytester.makepyfile(FORKING + '''
@pytest.mark.memscope(worker_uss="64MiB")
def test_measured():
    fork_workers(1, 1)
''')
    import sys

    result = pytester.run("setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable,
                          "-m", "pytest", "-p", "no:cacheprovider", "-p", "pytester")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*memscope: cannot measure this test: permission denied*"])


def test_forkserver_pool_workers_are_workers(pytester: pytest.Pytester) -> None:
    """The default start method from 3.14: the pool processes are the fork server's children,
    and they are the workers (memscope.roles), not the fork server."""
    pytester.makepyfile('''
import multiprocessing as mp
import os
import time


def hold(_):
    time.sleep(0.6)
    return os.getpid()


def test_pool(memscope_recording):
    with mp.get_context("forkserver").Pool(2) as pool:
        pids = set(pool.map(hold, range(4)))
        time.sleep(0.5)
    summary = memscope_recording.summary()
    workers = {p.pid for p in summary.workers}
    assert pids <= workers and len(workers) == 2, (pids, workers)
    assert all(p.extra.get("made_by") == "forkserver" for p in summary.workers)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
