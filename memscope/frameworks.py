"""Names users know for the processes of a tree: gunicorn master/worker, Celery's
ForkPoolWorker-N, uWSGI workers, multiprocessing helpers, spawned (exec'd) workers (pure).

Recognition reads what a recording keeps of each process: its command line (which is also
where setproctitle writes a process title), its parent, its birth and exit. Rules:

- gunicorn: a process whose command runs gunicorn (argv[0] or `-m gunicorn`, or a title
  "gunicorn: master [app]" / "gunicorn: worker [app]") is the *master* unless its parent is
  one too; the master's children are *workers*, with their age (seconds since their birth).
- Celery: a command running celery `worker` (or `celery -A app worker`); its forked children
  are the prefork pool. A title with "ForkPoolWorker-N" (setproctitle installed) gives N;
  otherwise N is the birth order, as billiard numbers them (a replaced child takes the next N).
- uWSGI: a command running uwsgi (or titled "uWSGI master", --auto-procname); the first is the
  master, its children workers with their id ("uWSGI worker N" title where set, else the
  birth order).
- multiprocessing: `from multiprocessing.resource_tracker import main` is the resource
  tracker, `...forkserver import main` the fork server (its forked children, with the same
  command line, are "forkserver worker"s: they share the server's memory, not the user
  parent's), `spawn_main` a spawned worker.
- exec'd: a non-root process whose command line differs from its parent's, is not a process
  title set in place (one argv string with spaces, as setproctitle writes), and matches none
  of the above ran exec: it shares no inherited memory with its parent, so COW figures
  ("% of inherited") do not apply to it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from memscope.analysis.summary import ProcessSummary, Summary
from memscope.roles import retitled

__all__ = ["Recognized", "display_name", "recognize"]

_FORK_POOL = re.compile(r"ForkPoolWorker-(\d+)")
_UWSGI_WORKER = re.compile(r"uWSGI worker (\d+)")
_GUNICORN_TITLE = re.compile(r"^gunicorn: (master|worker)\b")


@dataclass(frozen=True, slots=True)
class Recognized:
    framework: str  # "gunicorn" | "celery" | "uwsgi" | "multiprocessing" | "exec"
    kind: str  # "master" | "worker" | "resource_tracker" | "forkserver" | "spawned" | "exec'd"
    name: str  # what users call it: "gunicorn worker", "ForkPoolWorker-3", ...
    worker_id: int | None = None
    age_s: float | None = None
    shares_inherited: bool = True  # False: exec'd, no COW relation to its parent

    def to_json(self) -> dict[str, object]:
        return {
            "framework": self.framework, "kind": self.kind, "name": self.name,
            "worker_id": self.worker_id, "age_s": self.age_s,
            "shares_inherited": self.shares_inherited,
        }


def _words(p: ProcessSummary) -> list[str]:
    return [os.path.basename(a) for a in p.cmdline[:4]]


def _runs(p: ProcessSummary, program: str) -> bool:
    words = _words(p)
    if not words:
        return False
    if words[0].startswith(program) or (len(words) > 1 and words[1].startswith(program)):
        return True  # `gunicorn ...`, `python gunicorn ...`, `uwsgi ...`
    return any(
        a == "-m" and b == program for a, b in zip(p.cmdline, p.cmdline[1:], strict=False)
    )


def _title(p: ProcessSummary) -> str:
    return " ".join(p.cmdline)


def _mp_helper(p: ProcessSummary) -> Recognized | None:
    cmd = _title(p)
    if "multiprocessing.resource_tracker" in cmd:
        return Recognized("multiprocessing", "resource_tracker", "resource_tracker",
                          shares_inherited=False)
    if "multiprocessing.forkserver" in cmd:
        return Recognized("multiprocessing", "forkserver", "forkserver", shares_inherited=False)
    if "spawn_main" in cmd or "--multiprocessing-fork" in cmd:
        return Recognized("multiprocessing", "spawned", "spawned worker", shares_inherited=False)
    return None


def _is_celery_worker(p: ProcessSummary) -> bool:
    title = _title(p)
    return (_runs(p, "celery") and "worker" in p.cmdline) or (
        "[celeryd:" in title and not _FORK_POOL.search(title)
    )


def _pool_children(parent: ProcessSummary, summary: Summary) -> list[ProcessSummary]:
    kids = [c for c in summary.processes if c.parent_id == parent.id and _mp_helper(c) is None]
    return sorted(kids, key=lambda c: (c.started_at, c.pid))


def recognize(summary: Summary) -> dict[int, Recognized]:
    """Recognized processes by ProcessSummary.id (unrecognized ones are absent)."""
    out: dict[int, Recognized] = {}
    by_id = {p.id: p for p in summary.processes}
    end = summary.ended_at
    for p in summary.processes:
        helper = _mp_helper(p)
        parent = by_id.get(p.parent_id) if p.parent_id is not None else None
        if helper is not None and parent is not None and parent.cmdline == p.cmdline:
            # forked by the helper itself: a fork server's pool worker (shares the server's
            # memory, not the user's parent's)
            helper = Recognized("multiprocessing", "worker", f"{helper.name} worker")
        if helper is not None:
            out[p.id] = helper
            continue
        if p.id in out:  # a pool child, named with its master
            continue
        title = _title(p)
        if _runs(p, "gunicorn") or _GUNICORN_TITLE.match(title):
            out[p.id] = Recognized("gunicorn", "master", "gunicorn master",
                                   age_s=p.lifetime(end))
            for n, c in enumerate(_pool_children(p, summary), 1):
                out[c.id] = Recognized("gunicorn", "worker", "gunicorn worker", n,
                                       c.lifetime(end))
        elif _is_celery_worker(p):
            out[p.id] = Recognized("celery", "master", "celery worker (main)",
                                   age_s=p.lifetime(end))
            for n, c in enumerate(_pool_children(p, summary), 1):
                m = _FORK_POOL.search(_title(c))
                wid = int(m.group(1)) if m else n
                out[c.id] = Recognized("celery", "worker", f"ForkPoolWorker-{wid}", wid,
                                       c.lifetime(end))
        elif _runs(p, "uwsgi") or title.startswith("uWSGI master"):
            out[p.id] = Recognized("uwsgi", "master", "uWSGI master", age_s=p.lifetime(end))
            for n, c in enumerate(_pool_children(p, summary), 1):
                m = _UWSGI_WORKER.search(_title(c))
                wid = int(m.group(1)) if m else n
                out[c.id] = Recognized("uwsgi", "worker", f"uWSGI worker {wid}", wid,
                                       c.lifetime(end))
    for p in summary.processes:
        parent = by_id.get(p.parent_id) if p.parent_id is not None else None
        if p.id in out or parent is None or not p.cmdline or not parent.cmdline:
            continue
        if p.role in ("wrapper", "master"):  # exec'd by a wrapper: COW vs a shell is moot
            continue
        if p.cmdline != parent.cmdline and not _retitled(p):
            out[p.id] = Recognized("exec", "exec'd", "exec'd (shares nothing)",
                                   shares_inherited=False)
    return out


def _retitled(p: ProcessSummary) -> bool:
    """A process title set in place (setproctitle, prctl-style): one argv string with spaces
    and no path, e.g. "myapp: worker 3". A forked process may carry one: not exec evidence."""
    return retitled(p.cmdline)


def display_name(p: ProcessSummary) -> str:
    """The role column: the recognized name, else the tree role."""
    info = p.extra.get("framework")
    if isinstance(info, dict) and isinstance(info.get("name"), str):
        return str(info["name"])
    return p.role
