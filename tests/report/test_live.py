"""The live view: the table builder, and `memscope run --live` on a real terminal (a pty).

GIVEN rows for 100 processes, or a real preload_list tree recorded in a pseudo-terminal
WHEN the live table is built / drawn every tick, and the user presses Ctrl-C
THEN rows are sorted by USS and cut to the screen with a summary line, the real tree's workers
appear on screen with their measured USS, and Ctrl-C ends the recording cleanly with the
report printed and the recording readable.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from rich.console import Console

from memscope.analysis.summary import build_summary
from memscope.live import LiveRow, build_table, sparkline
from memscope.recording import open_recording
from tests.conftest import fixture

MiB = 1024 * 1024
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def render(table: object, width: int = 120) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


def test_sparkline_scales_to_its_own_range() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5]) == "▁▁▁"
    assert sparkline([]) == ""
    assert len(sparkline(range(100), width=12)) == 12


def test_table_sorts_by_uss_and_truncates_with_a_summary_line() -> None:
    rows = [LiveRow(pid=1000 + i, role="worker", rss=100 * MiB, pss=50 * MiB, uss=i * MiB,
                    shared=60 * MiB, trend=[i, i + 1]) for i in range(100)]
    rows.append(LiveRow(pid=1, role="root"))  # no rollup yet: sorts last, shows '-'
    text = render(build_table(rows, max_rows=10, elapsed=12.0))
    lines = text.splitlines()
    assert "memscope live: 101 processes, 12s" in lines[0]
    pids = [int(m.group(1)) for line in lines if (m := re.match(r"│\s*(\d+) │ worker", line))]
    assert pids == [1099 - i for i in range(10)]  # largest USS first
    more = next(line for line in lines if "91 more" in line)
    # The 91 rows not shown: 90 workers with USS 0..89 MiB (sum 4005 MiB), and the root.
    assert "3.9 GiB" in more and "8.8 GiB" in more  # ΣUSS 4005 MiB, ΣRSS 90 x 100 MiB
    total = next(line for line in lines if "│ tree" in line)
    assert "9.8 GiB" in total  # 100 x 100 MiB RSS
    assert "60%" in text  # shared / rss
    assert "ΣRSS is 2.00x the true footprint ΣPSS" in text


def _spawn_in_pty(argv: list[str], rows: int = 40, cols: int = 120) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            preexec_fn=controlling_tty, close_fds=True)
    os.close(slave)
    return proc, master


def _read_until(master: int, pattern: re.Pattern[str], timeout: float, seen: list[str]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                return bool(pattern.search(ANSI.sub("", "".join(seen))))
            if not chunk:
                break
            seen.append(chunk.decode("utf-8", "replace"))
        if pattern.search(ANSI.sub("", "".join(seen))):
            return True
    return False


def test_run_live_in_a_terminal_and_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "live.memscope"
    argv = [sys.executable, "-c", "from memscope.cli import main; main()", "run", "--live",
            "-i", "0.2", "-o", str(out), "--", sys.executable, fixture("preload_list"),
            "--workers", "4", "--size", "300000", "--delay", "0.2", "--hold", "60"]
    proc, master = _spawn_in_pty(argv)
    seen: list[str] = []
    try:
        # Four workers whose USS grew to ~9.9 MiB by iterating the preloaded ints.
        copied = re.compile(r"(│\s*\d+ │ worker .*│\s+9\.\d MiB │.*\n.*){4}")
        assert _read_until(master, copied, 30, seen), ANSI.sub("", "".join(seen))[-3000:]
        screen = ANSI.sub("", "".join(seen))
        assert "USS trend" in screen and "│ tree" in screen and "Ctrl-C stops" in screen
        os.write(master, b"\x03")  # Ctrl-C, delivered by the terminal to the foreground group
        done = re.compile(r"recording saved to")
        assert _read_until(master, done, 30, seen), ANSI.sub("", "".join(seen))[-3000:]
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        os.close(master)
    screen = ANSI.sub("", "".join(seen))
    assert "Tree totals" in screen  # the report printed after the live view
    assert code == 128 + signal.SIGINT  # the command's own status: it died of the SIGINT
    rec = open_recording(str(out))
    try:
        summary = build_summary(rec)
    finally:
        rec.close()
    assert len(summary.workers) == 4
    assert all((p.last.uss or 0) > 8 * MiB for p in summary.workers)


def test_attach_live_shows_the_tree_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    target = subprocess.Popen([sys.executable, fixture("preload_list"), "--workers", "2",
                               "--size", "200000", "--delay", "0.1", "--hold", "60"],
                              stdout=subprocess.DEVNULL, start_new_session=True)
    out = tmp_path / "attach.memscope"
    argv = [sys.executable, "-c", "from memscope.cli import main; main()", "attach", "--live",
            "-i", "0.2", "-o", str(out), str(target.pid)]
    proc, master = _spawn_in_pty(argv)
    seen: list[str] = []
    try:
        rows = re.compile(rf"│\s*{target.pid} │ root .*\n(.*│ worker .*\n){{2}}")
        assert _read_until(master, rows, 30, seen), ANSI.sub("", "".join(seen))[-3000:]
        os.write(master, b"\x03")
        assert _read_until(master, re.compile("recording saved to"), 30, seen)
        code = proc.wait(timeout=30)
    finally:
        alive = target.poll() is None  # attach reads /proc only: Ctrl-C never reached it
        os.killpg(target.pid, signal.SIGKILL)  # the fixture and its workers
        target.wait()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert code == 0
    assert alive
    assert "Tree totals" in ANSI.sub("", "".join(seen))
