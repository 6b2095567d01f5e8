"""Target-controlled strings never reach the terminal as escape sequences or rich markup."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from memscope.termsafe import clean
from tests.hardening._support import invoke, make_recording

OSC52 = "\x1b]52;c;SGVsbG8=\x07"  # write "Hello" to the clipboard
TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J\x1b[H"
EVIL_ARGV0 = f"{OSC52}{TITLE}{CLEAR}\x9b31m[bold]x[/]"

# A root that forks a worker which re-executes itself with a hostile argv.
_WORKLOAD = f"""
import os, time
pid = os.fork()
if pid == 0:
    os.execv("/bin/sleep", [{EVIL_ARGV0!r}, "1"])
os.waitpid(pid, 0)
"""


def _assert_neutral(output: str) -> None:
    assert "\x1b" not in output and "\x07" not in output and "\x9b" not in output
    assert "\\x1b]52;c;SGVsbG8=\\x07" in output or "\\x1b]52" in output


def test_clean_escapes_every_control_and_bidi_and_undecodable_byte() -> None:
    assert clean("a\x1bb\x07c\nd\te\x7ff\x85g\u202eh\u2066i") == (
        "a\\x1bb\\x07c\\x0ad\\x09e\\x7ff\\x85g\\u202eh\\u2066i")
    assert clean(b"caf\xff".decode("utf-8", "surrogateescape")) == "caf\\xff"
    assert clean("plain [bold]text[/] ✓") == "plain [bold]text[/] ✓"


def test_run_summary_report_and_check_neutralise_a_hostile_argv(tmp_path: Path) -> None:
    rec = str(tmp_path / "r.memscope")
    code, out = invoke("run", "-i", "0.05", "-o", rec, "--", sys.executable, "-c", _WORKLOAD)
    assert code == 0, out
    _assert_neutral(out)  # the end-of-run summary
    assert "[bold]x[/]" in out  # shown as written, not interpreted
    code, out = invoke("report", rec)
    assert code == 0
    _assert_neutral(out)
    code, out = invoke("check", rec, "-r", "process.rss.peak <= 1B")
    assert code == 1
    # the worst process may be the root; every process label must be clean either way
    assert "\x1b" not in out and "\x07" not in out


def test_report_argv_with_markup_and_escapes_from_a_recording(tmp_path: Path) -> None:
    rec = make_recording(str(tmp_path / "r.memscope"), cmdline=[EVIL_ARGV0, "[/]"])
    code, out = invoke("report", rec)
    assert code == 0, out
    _assert_neutral(out)
    code, out = invoke("check", rec, "-r", "process.uss.peak <= 1B", "-r", "[/] <= 1")
    assert code == 2 and "\x1b" not in out


def test_paths_with_rich_markup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkdir("[")
    rec = make_recording(os.path.join("[", "]x.memscope"))  # the path "[/]x.memscope"
    assert rec == "[/]x.memscope"
    code, out = invoke("report", rec)
    assert code == 0, out
    code, out = invoke("report", rec, "-f", "json", "-o", "[/]x.json")
    assert code == 0, out
    code, out = invoke("report", "[/]nosuch.memscope")
    assert code == 2 and "[/]nosuch.memscope: no such recording" in out


def test_run_to_a_markup_path_passes_the_exit_status_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkdir("[")
    code, out = invoke("run", "-o", "[/]r.memscope", "--", "sh", "-c", "exit 5")
    assert code == 5, out
    assert "recording saved to [/]r.memscope" in out
