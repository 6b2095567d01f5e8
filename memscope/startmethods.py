"""How each worker was made, and what that means for sharing (pure).

A worker (memscope.roles) was made one of three ways:

- ``fork``: forked from the master. It shares, copy-on-write, everything the master had
  built before the fork; COW figures are measured against the master.
- ``forkserver``: forked from multiprocessing's fork server, a fresh interpreter the master
  started (exec'd) -- the default start method on Linux from Python 3.14. The worker shares
  only what the fork server imported (``set_forkserver_preload``), nothing the master built;
  COW figures are measured against the fork server, its actual parent.
- ``spawn``: a fresh interpreter (multiprocessing's spawn, or any fork+exec of the master):
  it shares nothing with the master, and rebuilds whatever it needs.

`start_methods(summary)` classifies the workers and, when some share nothing with the
master, writes a note that says so plainly and what to do.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from memscope.analysis.summary import ProcessSummary, Summary
from memscope.roles import MAIN_ROLES, retitled

__all__ = ["made_by", "start_methods"]

_FORKSERVER = "multiprocessing.forkserver"

_WHAT_TO_DO = (
    "To share the master's data again: load it in the fork server (start method "
    "'forkserver') with multiprocessing.set_forkserver_preload(['yourapp.data']) (modules "
    "imported there are shared by every worker, copy-on-write), or choose "
    "multiprocessing.set_start_method('fork') knowingly (forking a master that runs threads "
    "can deadlock a worker), or put the bulk data in multiprocessing.shared_memory (or an "
    "mmap'd file) that every worker maps."
)


def _execd(child: ProcessSummary, parent: ProcessSummary) -> bool:
    return bool(child.cmdline) and child.cmdline != parent.cmdline and not retitled(
        child.cmdline)


def made_by(p: ProcessSummary, by_id: dict[int, ProcessSummary],
            execd: frozenset[int] = frozenset()) -> str | None:
    """"fork", "forkserver" or "spawn" for a worker, else None. `execd`: ids of the processes
    the recording saw exec (table process_exec); a spawned worker that then set a process
    title (dask, setproctitle) is known only from there."""
    parent = by_id.get(p.parent_id) if p.parent_id is not None else None
    if p.role != "worker" or parent is None:
        return None
    if _FORKSERVER in " ".join(parent.cmdline):
        return "forkserver"
    return "spawn" if p.id in execd or _execd(p, parent) else "fork"


def start_methods(summary: Summary, execd: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Sets `extra["made_by"]` on each worker; returns {"workers": {method: count},
    "notes": [{"method", "pids", "parent_pids", "master_pid", "text"}]}."""
    by_id = {p.id: p for p in summary.processes}
    masters = [p for p in summary.processes if p.role in MAIN_ROLES]
    master = masters[0] if masters else None
    pids: dict[str, list[int]] = {}
    parents: dict[str, set[int]] = {}
    for p in summary.processes:
        how = made_by(p, by_id, execd)
        if how is None:
            continue
        p.extra["made_by"] = how
        pids.setdefault(how, []).append(p.pid)
        parents.setdefault(how, set()).add(p.ppid)
    notes: list[dict[str, Any]] = []
    mpid = master.pid if master is not None else None
    if "forkserver" in pids:
        servers = sorted(parents["forkserver"])
        notes.append({
            "method": "forkserver", "pids": pids["forkserver"], "parent_pids": servers,
            "master_pid": mpid,
            "text": (f"{len(pids['forkserver'])} worker(s) were forked from the "
                     f"multiprocessing fork server (pid {', '.join(map(str, servers))}), not "
                     f"from the master (pid {mpid}): they share nothing the master built, "
                     "only what the fork server imported; their COW figures are measured "
                     "against the fork server. forkserver is multiprocessing's default "
                     "start method on Linux from Python 3.14. " + _WHAT_TO_DO),
        })
    if "spawn" in pids:
        notes.append({
            "method": "spawn", "pids": pids["spawn"], "parent_pids": sorted(parents["spawn"]),
            "master_pid": mpid,
            "text": (f"{len(pids['spawn'])} worker(s) were spawned (a fresh interpreter, "
                     f"exec'd) by the master (pid {mpid}): they share nothing with it and "
                     "each builds its own copy of what it needs. " + _WHAT_TO_DO),
        })
    counts = Counter({k: len(v) for k, v in pids.items()})
    return {"workers": dict(sorted(counts.items())), "notes": notes}
