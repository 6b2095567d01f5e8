"""Target detection: real interpreters, and /proc trees laid out around real ELF images."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from memscope.cow.cpython import Target, detect_target
from memscope.cow.cpython._elf import ElfError, parse_elf
from memscope.cow.cpython._target import _unsupported_reason
from memscope.procfs import ProcFS
from tests.conftest import target_python
from tests.cow._heap_helpers import PYENV

FAKE_PID = 4242
LIB313 = PYENV / "3.13.0/lib/libpython3.13.so.1.0"
LIB38 = PYENV / "3.8.18/lib/libpython3.8.so.1.0"


def fake_proc(tmp: Path, image: Path, as_path: str, exe: str = "/usr/bin/app") -> ProcFS:
    """A /proc with one process that maps `image` under the name `as_path`.

    Its mem file is empty, so every read from "memory" fails like an unmapped address.
    """
    proc = tmp / "proc" / str(FAKE_PID)
    rootfs = tmp / "rootfs"
    (rootfs / as_path.lstrip("/")).parent.mkdir(parents=True)
    (rootfs / as_path.lstrip("/")).symlink_to(image)
    proc.mkdir(parents=True)
    (proc / "root").symlink_to(rootfs)
    (proc / "exe").symlink_to(exe)
    (proc / "mem").write_bytes(b"")
    (proc / "maps").write_text(
        f"7f1000000000-7f1000100000 r--p 00000000 08:01 77 {as_path}\n"
        f"7f1000100000-7f1000400000 r-xp 00100000 08:01 77 {as_path}\n"
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n"
    )
    return ProcFS(str(tmp / "proc"))


SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's: libpython linked into a non-PIE executable
GET_VERSION = "import sys; print(*sys.version_info[:3]); sys.stdout.flush(); sys.stdin.read()"


@pytest.fixture
def system_python() -> Iterator[tuple[int, tuple[int, ...]]]:
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", GET_VERSION], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        yield proc.pid, tuple(int(x) for x in proc.stdout.readline().split())
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()


def test_statically_linked_interpreter(system_python: tuple[int, tuple[int, ...]]) -> None:
    pid, version = system_python
    target = detect_target(pid, ProcFS())
    assert target.version == version
    assert target.supported
    assert target.image is not None
    assert "libpython" not in target.image
    assert target.method.startswith("Py_Version")


def test_not_python() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        target = detect_target(proc.pid, ProcFS())
    finally:
        proc.kill()
        proc.wait()
    assert (target.implementation, target.supported) == ("unknown", False)
    assert "not a Python interpreter" in target.reason


def test_pypy_is_page_level_only(tmp_path: Path) -> None:
    procfs = fake_proc(
        tmp_path, LIB313, "/opt/pypy3.10/bin/libpypy3.10-c.so", "/opt/pypy3.10/bin/pypy3.10"
    )
    target = detect_target(FAKE_PID, procfs)
    assert (target.implementation, target.supported) == ("pypy", False)
    assert "PyPy" in target.reason


def test_free_threaded_build_from_name_and_image_constant(tmp_path: Path) -> None:
    procfs = fake_proc(tmp_path, LIB313, "/opt/py/lib/libpython3.13t.so.1.0")
    target = detect_target(FAKE_PID, procfs)
    assert target.version == (3, 13, 0)
    assert target.free_threaded
    assert not target.supported
    assert "free-threaded" in target.reason
    assert target.method == "Py_Version symbol in the image"


def test_debug_build_from_name(tmp_path: Path) -> None:
    procfs = fake_proc(tmp_path, LIB38, "/opt/py/lib/libpython3.8d.so.1.0")
    target = detect_target(FAKE_PID, procfs)
    assert target.version == (3, 8, 18)
    assert target.debug
    assert not target.supported
    assert "debug build" in target.describe()
    assert target.method == "PY_VERSION string in the image (heuristic)"


@pytest.mark.parametrize(
    ("version", "words"),
    [((3, 16, 0), "untested"), ((3, 7, 16), "older"), ((3, 12, 1), ""), ((3, 14, 10), ""), ((3, 15, 2), "")],
)
def test_supported_range(version: tuple[int, int, int], words: str) -> None:
    reason = _unsupported_reason(version, free_threaded=False, debug=False)
    assert (words in reason) if words else reason == ""


def test_elf_symbols_of_shared_and_static_images() -> None:
    lib = parse_elf(LIB38.read_bytes(), {"version.0", "PyType_Type", "Py_Version"})
    assert lib.has_symtab
    assert not lib.is_exec
    assert {"version.0", "PyType_Type"} <= set(lib.symbols)
    assert "Py_Version" not in lib.symbols
    exe = parse_elf(Path(os.path.realpath(SYSTEM_PYTHON)).read_bytes(), {"Py_Version"})
    assert exe.is_exec
    assert "Py_Version" in exe.symbols
    with pytest.raises(ElfError):
        parse_elf(b"#!/bin/sh\n" * 10, {"x"})
    with pytest.raises(ElfError):
        parse_elf(LIB38.read_bytes()[:100], {"x"})


def test_describe_names_the_build() -> None:
    target = Target(1, "cpython", (3, 12, 1), supported=True)
    assert target.describe() == "CPython 3.12.1"


@pytest.mark.parametrize("version", ["3.14", "3.15"])
def test_debian_static_interpreters_are_supported(version: str) -> None:
    python = target_python(version)
    if python is None:
        pytest.skip(f"CPython {version} is not installed (../shared/tools/cpython-from-debian)")
    proc = subprocess.Popen([python, "-c", GET_VERSION], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        reported = tuple(int(x) for x in proc.stdout.readline().split())
        target = detect_target(proc.pid, ProcFS())
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    assert target.version == reported
    assert target.supported, target.reason
    assert target.method == "Py_Version symbol read from memory"
    assert target.image == os.path.realpath(python)


def test_free_threaded_static_314_stays_page_level(tmp_path: Path) -> None:
    # Debian ships no free-threaded 3.14: its 3.14 executable, named as a 3.14t build would be.
    python = target_python("3.14")
    if python is None:
        pytest.skip("CPython 3.14 is not installed (../shared/tools/cpython-from-debian)")
    exe = "/usr/bin/python3.14t"
    procfs = fake_proc(tmp_path, Path(os.path.realpath(python)), exe, exe)
    target = detect_target(FAKE_PID, procfs)
    assert target.version is not None and target.version[:2] == (3, 14)
    assert target.free_threaded
    assert not target.supported
    assert "free-threaded build (mimalloc heap, other object header): page-level only" in (
        target.describe()
    )
