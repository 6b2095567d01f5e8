"""`memscope scan PID`: one copy-on-write scan of a forked process against its parent, now."""

from __future__ import annotations

import sys

import click
from rich.console import Console, Group
from rich.text import Text

from memscope.analysis.advice import add_snippets, advise, advise_pandas
from memscope.analysis.cow_summary import advice_json, cow_json
from memscope.cow.classify import MODES
from memscope.cow.scan import scan_process
from memscope.errors import TargetError
from memscope.libraries import mapped_libraries
from memscope.outputs import json_text
from memscope.procfs import AccessDenied, ProcessGone, ProcFS, Stat
from memscope.termsafe import clean, safe_text
from memscope.units import format_bytes

__all__ = ["command"]

_HINT = "run memscope as root (or with CAP_SYS_PTRACE) to read another user's process"


def _scannable(procfs: ProcFS, pid: int, who: str) -> Stat:
    """Stat of `pid`, or a TargetError for what a scan cannot read: zombies, kernel threads."""
    stat = procfs.stat(pid)
    if stat.state == "Z":
        raise TargetError(f"{who} {pid} is a zombie (exited, not yet reaped): no memory to scan")
    if stat.kernel_thread:
        raise TargetError(f"{who} {pid} ({clean(stat.comm)}) is a kernel thread: it has no"
                          " user-space memory to scan")
    return stat


@click.command("scan")
@click.argument("pid", type=click.IntRange(min=1))
@click.option("--parent", "parent_pid", type=click.IntRange(min=1), default=None,
              help="Compare against this process [default: PID's parent].")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="Force the page classification mode [default: pfn when PFNs are readable].")
@click.option("--json", "as_json", is_flag=True, help="Print the scan as JSON.")
def command(pid: int, parent_pid: int | None, mode: str | None, as_json: bool) -> None:
    """Scan PID's copy-on-write state against its parent: what it copied, which Python
    types live in the copied pages, why they were copied, and what would fix it.

    Reads /proc only (pagemap, mem): the processes are not stopped or changed.

    \b
    Examples:
      memscope scan 4243
      memscope scan $(pgrep -n -f 'gunicorn: worker') --json
    """
    procfs = ProcFS()
    try:
        stat = _scannable(procfs, pid, "process")
        ppid = parent_pid if parent_pid is not None else stat.ppid
        if ppid == 0:
            raise TargetError(f"process {pid} has no parent process to compare against")
        _scannable(procfs, ppid, "its parent")
        # A spinner on a terminal: a scan of a large heap takes a second or more.
        with Console(stderr=True).status(f"scanning {pid} against its parent {ppid}…"):
            scan = scan_process(pid, ppid, procfs, mode=mode)
    except ProcessGone as exc:
        raise TargetError(f"no process with PID {exc.pid} (or it exited during the scan)") from None
    except AccessDenied as exc:
        raise TargetError(str(exc), hint=_HINT) from None
    advice = advise([scan])
    try:  # a worker that maps pandas: its copied str may be object columns' values
        frameworks = ["pandas"] if "pandas" in mapped_libraries(procfs.read(pid, "maps")) else []
    except (ProcessGone, AccessDenied):
        frameworks = []
    if frameworks and (pandas := advise_pandas([scan])) is not None:
        advice = sorted([*advice, pandas], key=lambda a: -a.bytes)
    items = advice_json(advice)
    add_snippets(items, frameworks)
    if as_json:
        sys.stdout.write(json_text({"pid": pid, "parent_pid": ppid, "cow": cow_json(scan),
                                    "advice": items,
                                    "mode_reason": scan.mode_reason}, indent=2))
        sys.stdout.write("\n")
        return
    frac = scan.copied_bytes / scan.inherited_bytes if scan.inherited_bytes else 0.0
    text = Text()
    text.append(f"process {pid} against parent {ppid}", style="bold")
    text.append(f" ({clean(scan.target or 'unknown target')}; mode {scan.mode};")
    text.append(f" scan took {scan.duration_s * 1000:.0f} ms)\n")
    if scan.mode_reason:
        text.append(f"  mode {scan.mode}: {scan.mode_reason}\n")
    text.append(
        f"  copied {format_bytes(scan.copied_bytes)} ({frac:.1%} of"
        f" {format_bytes(scan.inherited_bytes)} inherited), still shared"
        f" {format_bytes(scan.shared_bytes)}, new private {format_bytes(scan.new_private_bytes)}\n"
    )
    for kind, row in scan.by_kind.items():
        if row.get("copied"):
            text.append(f"  {clean(kind):<13} copied {format_bytes(row['copied'])}\n")
    text.append("causes: ", style="bold")
    text.append(", ".join(f"{c} {format_bytes(b)}" for c, b in
                          sorted(scan.by_cause.items(), key=lambda kv: -kv[1])) + "\n")
    text.append("types in copied pages:\n", style="bold")
    for t in scan.by_type[:12]:
        causes = scan.by_type_cause.get(t.type, {})
        top = max(causes, key=lambda c: causes[c]) if causes else "-"
        objects = f"{t.objects:,} objects" if t.objects else ""
        text.append(f"  {format_bytes(t.bytes):>10}  {clean(t.type)}  {objects}  (mostly {top})\n")
    parts = [text]
    for i, item in enumerate(items, 1):
        parts.append(safe_text(f"advice {i}: {item['title']}\n   ")
                     + safe_text(item["text"]))
        if item.get("snippet"):
            parts.append(safe_text("".join(f"     {ln}\n"
                                           for ln in str(item["snippet"]).splitlines())))
    Console(highlight=False, width=120).print(Group(*parts))
