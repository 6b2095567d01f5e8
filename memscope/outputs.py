"""Output paths: memscope never destroys what it did not write.

Rules (docs/errors.md):
- a path that does not exist is created (exclusively: nothing slipped in between is followed);
- an existing recording path is refused unless --force, and even then only a file that is
  recognisably a memscope recording (or empty) is replaced;
- a report replaces only a regular file that memscope wrote (or an empty one), atomically:
  a temp file in the target directory, then rename();
- symbolic links, devices, FIFOs, sockets and directories are refused, never written through;
  `-o -` writes a report to stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from typing import Any, TextIO

from memscope.errors import InputError, RecordingError, UsageError

__all__ = [
    "STDOUT",
    "create_recording_file",
    "json_text",
    "prepare_recording_output",
    "unique_path",
    "write_text_atomically",
]

STDOUT = "-"
_APPLICATION_ID = b"\x4d\x53\x43\x50"  # recording.APPLICATION_ID, big-endian at offset 68
_WAL_MAGIC = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
#: How memscope's reports are recognised: the word near the start (text, JSON, HTML,
#: Prometheus, baselines), or the first line of the formats that have no room for it: the CSV
#: header and mprof's CMDLINE (an mprof .dat file is recognised by format alone).
_REPORT_MARK = b"memscope"
_REPORT_STARTS = (b"t,epoch,process_id,pid,ppid,role,command,", b"CMDLINE ")
_SNIFF = 4096


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"{path}: cannot inspect ({exc.strerror})") from None


def _head(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(fd, _SNIFF)
    finally:
        os.close(fd)


def is_recording_file(path: str) -> bool:
    head = _head(path)
    return head.startswith(b"SQLite format 3\0") and head[68:72] == _APPLICATION_ID


def _check_directory(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise RecordingError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise RecordingError(f"{path}: cannot create files in {directory}")


def _refuse_special(path: str, st: os.stat_result, what: str) -> None:
    kind = _kind(st.st_mode)
    if kind is not None:
        raise InputError(
            f"{path}: is {kind}; memscope writes {what} only to regular files and never"
            " replaces anything else",
            hint="give a new file name" + (" (or -o - for stdout)" if what == "reports" else ""),
        )


def prepare_recording_output(path: str, force: bool = False) -> None:
    """Validate a recording path before anything starts; with `force`, remove the old
    recording there. Raise a one-line error for anything memscope must not replace."""
    if path == STDOUT:
        raise UsageError("a recording cannot go to stdout (it is an SQLite file); give a path")
    _check_directory(path)
    st = _lstat(path)
    if st is None:
        return
    _refuse_special(path, st, "recordings")
    if not force:
        raise RecordingError(f"{path}: already exists", hint="pass --force to replace it")
    if st.st_size and not is_recording_file(path):
        raise RecordingError(
            f"{path}: exists and is not a memscope recording; --force replaces only recordings"
        )
    _remove(path)
    remove_stale_sidecars(path)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RecordingError(f"{path}: cannot replace ({exc.strerror})") from None


def remove_stale_sidecars(path: str) -> None:
    """Remove `-wal`/`-shm` files left by an earlier recording at `path` (SQLite would apply a
    stale WAL to the new file). Anything there that is not such a file is refused."""
    for suffix in ("-wal", "-shm"):
        side = path + suffix
        st = _lstat(side)
        if st is None:
            continue
        ok = stat.S_ISREG(st.st_mode) and (
            suffix == "-shm" or st.st_size == 0 or _head(side)[:4] in _WAL_MAGIC
        )
        if not ok:
            raise RecordingError(f"{side}: exists and is not an SQLite {suffix[1:]} file")
        _remove(side)


def create_recording_file(path: str) -> None:
    """Create `path` exclusively (O_EXCL | O_NOFOLLOW), so SQLite opens a file we made."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o666)
    except FileExistsError:
        raise RecordingError(f"{path}: already exists", hint="pass --force to replace it") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot create ({exc.strerror})") from None
    os.close(fd)
    remove_stale_sidecars(path)


def unique_path(path: str) -> str:
    """`path`, or `stem-2.ext`, `stem-3.ext`, ... for default names that are taken."""
    stem, ext = os.path.splitext(path)
    n = 1
    while os.path.lexists(path):
        n += 1
        path = f"{stem}-{n}{ext}"
    return path


def check_report_output(path: str) -> None:
    """Raise unless a report may be written to `path` (new, empty, or memscope's own)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError(f"cannot write {path}: directory {directory} does not exist")
    st = _lstat(path)
    if st is None:
        return
    _refuse_special(path, st, "reports")
    head = _head(path) if st.st_size else b""
    if st.st_size and _REPORT_MARK not in head.lower() and not head.startswith(_REPORT_STARTS):
        raise InputError(
            f"{path}: exists and was not written by memscope; refusing to replace it",
            hint="remove it first, or choose another file name",
        )


def write_text_atomically(path: str, render: Callable[[TextIO], object]) -> None:
    """render(file) into a temp file in `path`'s directory, then rename it over `path`."""
    check_report_output(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".memscope-")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        # mkstemp creates 0600; give the file the mode open() would have (readers such
        # as node_exporter's textfile collector often run as another user).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            render(out)
        check_report_output(path)  # again: nothing may have appeared there meanwhile
        os.replace(tmp, path)
    except OSError as exc:  # disk full, directory removed, ...
        _unlink_quietly(tmp)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def json_text(value: object, **options: Any) -> str:
    """json.dumps that never writes NaN or Infinity (invalid JSON): a one-line error instead."""
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        raise InputError(
            "cannot write JSON: a value is not a finite number (NaN or infinity);"
            " the recording or baseline is damaged"
        ) from None
