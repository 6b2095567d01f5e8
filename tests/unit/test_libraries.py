"""Mapped data libraries (memscope.libraries) and the pandas-strings advice rule.

Captured /proc/PID/maps lines of a CPython 3.11 process with pandas 3.1.1 and pyarrow 26
imported (paths shortened), live interpreters' maps (the hook on a real parent, child and
exec), and the advice threshold on scans.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memscope.analysis.advice import advise_pandas
from memscope.cow._model import CowScan, TypeBytes
from memscope.libraries import LibraryWatch, mapped_libraries, read_libraries
from memscope.procfs import ProcFS
from memscope.recording import RecordingWriter, open_recording
from memscope.sampler import TickContext
from memscope.tree import Member

SITE = "/srv/app/.venv/lib/python3.11/site-packages"
PANDAS_MAPS = f"""\
55d0c6a00000-55d0c6a2b000 r--p 00000000 fe:00 5489001                    /usr/bin/python3.11
7f4e8182a000-7f4e81831000 r--p 00000000 fe:00 5703108                    {SITE}/pandas/_libs/lib.cpython-311-x86_64-linux-gnu.so
7f4e81c00000-7f4e81c0f000 r--p 00000000 fe:00 5703096                    {SITE}/pandas/_libs/hashtable.cpython-311-x86_64-linux-gnu.so
7f4e83400000-7f4e836c7000 r--p 00000000 fe:00 5702232                    {SITE}/pyarrow/libarrow.so.2600
7f4e87e00000-7f4e87e40000 r--p 00000000 fe:00 5702229                    {SITE}/pyarrow/lib.cpython-311-x86_64-linux-gnu.so
7f4e8f200000-7f4e8f22b000 r--p 00000000 fe:00 5489537                    {SITE}/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so
7ffd1c5e1000-7ffd1c602000 rw-p 00000000 00:00 0                          [stack]
""".encode()


def test_the_extension_modules_name_the_libraries() -> None:
    assert mapped_libraries(PANDAS_MAPS) == ["numpy", "pandas", "pyarrow"]
    numpy_only = b"".join(ln + b"\n" for ln in PANDAS_MAPS.splitlines()
                          if b"/numpy/" in ln or b"/usr/bin/" in ln)
    assert mapped_libraries(numpy_only) == ["numpy"]
    # a file merely named like a library, or a data file under its directory, is not it
    lookalike = (b"7f00-7f01 r--p 0 fe:00 1 /home/u/pandas_notes/lib.so\n"
                 b"7f01-7f02 r--p 0 fe:00 2 /srv/data/pandas/_libs/readme.txt\n")
    assert mapped_libraries(lookalike) == []
    # a library upgraded in place while loaded is still loaded
    deleted = PANDAS_MAPS.replace(b"hashtable.cpython-311-x86_64-linux-gnu.so",
                                  b"hashtable.cpython-311-x86_64-linux-gnu.so (deleted)")
    deleted = b"".join(ln + b"\n" for ln in deleted.splitlines() if b"hashtable" in ln)
    assert mapped_libraries(deleted) == ["pandas"]


def test_a_live_interpreter_that_imported_pandas() -> None:
    pytest.importorskip("pandas", reason="pandas is not importable (the test extra has it)")
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, pandas; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        found = mapped_libraries(ProcFS().read(child.pid, "maps"))
    finally:
        child.communicate("", timeout=60)
    assert "pandas" in found and "numpy" in found


def scan(pid: int, copied: int, strings: int) -> CowScan:
    return CowScan(pid=pid, parent_pid=1, scanned_at=0.0, mode="pfn", inherited_bytes=copied,
                   copied_bytes=copied, shared_bytes=0, new_private_bytes=0, swapped_bytes=0,
                   by_type=[TypeBytes("str", strings, strings // 64),
                            TypeBytes("code", copied - strings, 1)])


def test_the_pandas_item_needs_strings_to_be_a_quarter_of_the_copied_bytes() -> None:
    MiB = 1 << 20
    # the object-column run's shape: most copied bytes are str
    item = advise_pandas([scan(10, 70 * MiB, 62 * MiB), scan(11, 70 * MiB, 1 * MiB)])
    assert item is not None and item.kind == "pandas-strings"
    assert item.bytes == 63 * MiB and item.pids == [10, 11] and item.types == ["str"]
    assert "string[pyarrow]" in item.recipe and "categorical" in item.recipe
    # the Arrow run's shape: the interpreter's own strings, 16% of what the workers copied
    assert advise_pandas([scan(10, 8 * MiB, 1_300_000), scan(11, 8 * MiB, 1_300_000)]) is None
    # a quarter, but under 1 MiB in all: not worth a line
    assert advise_pandas([scan(10, 2 * MiB, MiB // 2)]) is None


class CountingProcFS(ProcFS):
    maps_reads = 0

    def read(self, pid: int, name: str) -> bytes:
        self.maps_reads += name == "maps"
        return super().read(pid, name)


PARENT = """\
import os, sys
print("started", flush=True)
sys.stdin.readline()
import pandas
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    os.read(r, 1)
    os.execv("/bin/sleep", ["sleep", "60"])
print(pid, flush=True)
sys.stdin.readline()
os.write(w, b"x")
sys.stdin.readline()
os.kill(pid, 9)
os.waitpid(pid, 0)
"""


def test_the_watch_reads_each_process_once_a_parent_at_its_first_child_and_after_exec(
        tmp_path: Path) -> None:
    """GIVEN a real root read before it imports pandas, which then forks a child that later
    execs sleep: the child maps pandas (inherited), the root is read again at its first
    child, and after the exec the child's rows are its new image's (none)."""
    pytest.importorskip("pandas", reason="pandas is not importable (the test extra has it)")
    procfs = CountingProcFS()
    path = tmp_path / "libs.memscope"
    writer = RecordingWriter(str(path), {})
    watch = LibraryWatch()
    root = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert root.stdin is not None and root.stdout is not None

    def member(pid: int, ppid: int, role: str, parent: Member | None) -> Member:
        m = Member(pid=pid, start_ticks=procfs.stat(pid).start_ticks, ppid=ppid, role=role,
                   parent_key=None if parent is None else parent.key)
        m.record_id = writer.add_process(pid=pid, start_ticks=m.start_ticks, ppid=ppid,
                                         parent_id=None, role=role, cmdline=[], exe=None,
                                         python_version=None, started_at=0.0)
        return m

    try:
        assert root.stdout.readline() == "started\n"
        top = member(root.pid, os.getpid(), "root", None)
        watch.tick(TickContext(0.0, [top], top, writer, procfs, {}))  # before its imports
        root.stdin.write("\n")
        root.stdin.flush()
        child_pid = int(root.stdout.readline())
        child = member(child_pid, root.pid, "worker", top)
        members = [top, child]
        watch.tick(TickContext(1.0, members, top, writer, procfs, {}))
        reads = procfs.maps_reads
        watch.tick(TickContext(2.0, members, top, writer, procfs, {}))
        assert procfs.maps_reads == reads == 3  # nothing new: no read
        after_fork = dict(read_rows(writer))
        root.stdin.write("\n")
        root.stdin.flush()
        deadline = time.monotonic() + 30
        while os.path.basename(os.readlink(f"/proc/{child_pid}/exe")) != "sleep":
            assert time.monotonic() < deadline, "the child did not exec"
            time.sleep(0.01)
        child.execd = True
        watch.tick(TickContext(3.0, members, top, writer, procfs, {}))
        after_exec = dict(read_rows(writer))
        root.stdin.write("\n")
        root.stdin.flush()
    finally:
        root.communicate(timeout=60)
        writer.close()
    assert "pandas" in after_fork[top.record_id] and "pandas" in after_fork[child.record_id]
    assert after_exec[top.record_id] == after_fork[top.record_id]
    assert child.record_id not in after_exec  # sleep maps none of them
    rec = open_recording(str(path))
    try:
        assert read_libraries(rec) == {k: sorted(v) for k, v in after_exec.items()}
    finally:
        rec.close()


def read_rows(writer: RecordingWriter) -> list[tuple[int, list[str]]]:
    out: dict[int, list[str]] = {}
    for process_id, library in writer.conn.execute(
            "SELECT process_id, library FROM process_libraries"):
        out.setdefault(process_id, []).append(library)
    return list(out.items())
