"""RoleBook on process trees as the sampler sees them (memscope.roles), including the order
in which a scan without the kernel's events learns about execs."""

from __future__ import annotations

from memscope.roles import LASTING_S, RoleBook

PY = ["/usr/bin/python3", "app.py"]
SH = ["/bin/sh", "./start.sh"]


def book_with(*rows: tuple[tuple[int, int], tuple[int, int] | None, list[str], float]) -> RoleBook:
    book = RoleBook(rows[0][0])
    for key, parent, cmdline, born in rows:
        book.add(key, parent, cmdline, None, born)
    return book


def roles(book: RoleBook) -> dict[int, str]:
    book.decide()
    return {k[0]: n.role for k, n in book.nodes.items()}


def test_python_master_directly() -> None:
    book = book_with(((1, 0), None, PY, 0.0), ((2, 5), (1, 0), PY, 1.0), ((3, 5), (1, 0), PY, 1.0))
    assert roles(book) == {1: "root", 2: "worker", 3: "worker"}


def test_script_wrapper_with_short_helper() -> None:
    book = book_with(((1, 0), None, SH, 0.0), ((2, 1), (1, 0), ["dirname", "x"], 0.1))
    book.end((2, 1), 0.15)
    book.add((3, 2), (1, 0), PY, None, 0.2)
    book.add((4, 3), (3, 2), PY, None, 1.0)
    book.add((5, 3), (3, 2), PY, None, 1.0)
    assert roles(book) == {1: "wrapper", 2: "descendant", 3: "master", 4: "worker",
                           5: "worker"}


def test_scan_sees_the_child_before_its_exec() -> None:
    """Without events the child's first cmdline is its parent's: a worker until the exec is
    noticed, then the roles are revised."""
    book = book_with(((1, 0), None, SH, 0.0), ((2, 1), (1, 0), SH, 0.1))
    assert roles(book) == {1: "root", 2: "worker"}
    book.exec((2, 1), PY, None)
    book.add((3, 2), (2, 1), PY, None, 1.0)
    assert book.dirty
    assert roles(book) == {1: "wrapper", 2: "master", 3: "worker"}


def test_children_forked_before_the_parents_exec_do_not_count() -> None:
    """A pyenv shim (bash) forks helpers, then execs python, which forks the workers."""
    book = book_with(((1, 0), None, ["bash", "/shims/python3"], 0.0),
                     ((2, 1), (1, 0), ["bash", "/shims/python3"], 0.1))
    book.exec((1, 0), PY, "/usr/bin/python3.11", at=0.5)
    book.add((3, 2), (1, 0), PY, "/usr/bin/python3.11", 1.0)
    assert roles(book) == {1: "root", 2: "descendant", 3: "worker"}


def test_two_programs_at_once_is_not_a_wrapper() -> None:
    book = book_with(((1, 0), None, PY, 0.0), ((2, 1), (1, 0), ["redis-server"], 0.1),
                     ((3, 1), (1, 0), ["nginx"], 0.2))
    assert roles(book) == {1: "root", 2: "worker", 3: "worker"}  # both exec'd, lasting


def test_sequential_programs_keep_the_wrapper() -> None:
    book = book_with(((1, 0), None, SH, 0.0), ((2, 1), (1, 0), ["python3", "migrate.py"], 0.1))
    book.end((2, 1), 0.1 + 2 * LASTING_S)
    book.add((3, 2), (1, 0), PY, None, 0.2 + 2 * LASTING_S)
    assert roles(book)[1] == "wrapper" and roles(book)[3] == "master"


def test_multiprocessing_helpers_and_forkserver_workers() -> None:
    fs = ["/usr/bin/python3", "-c", "from multiprocessing.forkserver import main; main()"]
    rt = ["/usr/bin/python3", "-c", "from multiprocessing.resource_tracker import main"]
    book = book_with(((1, 0), None, PY, 0.0), ((2, 1), (1, 0), rt, 0.1), ((3, 1), (1, 0), fs, 0.2),
                     ((4, 2), (3, 1), fs, 1.0), ((5, 2), (3, 1), fs, 1.0))
    book.end((2, 1), 5.0)  # everything ended: the helpers still make 1 a master, not a wrapper
    book.end((3, 1), 5.0)
    assert roles(book) == {1: "root", 2: "descendant", 3: "descendant", 4: "worker",
                           5: "worker"}


def test_setproctitle_is_not_an_exec() -> None:
    book = book_with(((1, 0), None, ["gunicorn: master [app]"], 0.0),
                     ((2, 1), (1, 0), ["gunicorn: worker [app]"], 1.0))
    assert roles(book) == {1: "root", 2: "worker"}
    book.exec((2, 1), ["gunicorn: worker [app] busy"], None)  # retitled again
    assert roles(book) == {1: "root", 2: "worker"}


def test_short_exec_helpers_of_the_master_are_descendants() -> None:
    book = book_with(((1, 0), None, PY, 0.0), ((2, 1), (1, 0), ["git", "rev-parse"], 0.1),
                     ((3, 1), (1, 0), PY, 0.5))
    book.end((2, 1), 0.2)
    assert roles(book) == {1: "root", 2: "descendant", 3: "worker"}


def test_decide_reports_only_changes() -> None:
    book = book_with(((1, 0), None, PY, 0.0), ((2, 1), (1, 0), PY, 1.0))
    assert book.decide() == {(1, 0): "root", (2, 1): "worker"}
    assert book.decide() == {}


def test_a_short_run_keeps_its_wrapper() -> None:
    """The whole run took 0.5 s: the program lived most of the wrapper's life."""
    book = book_with(((1, 0), None, SH, 0.0), ((2, 1), (1, 0), PY, 0.01),
                     ((3, 2), (2, 1), PY, 0.1))
    for key, t in (((3, 2), 0.3), ((2, 1), 0.45), ((1, 0), 0.5)):
        book.end(key, t)
    assert roles(book) == {1: "wrapper", 2: "master", 3: "worker"}


def test_recycled_workers_leave_the_book() -> None:
    """A day of recycling: 1,000 forked workers come and go; the book keeps the live ones."""
    book = book_with(((1, 0), None, PY, 0.0))
    live: list[tuple[int, int]] = []
    for i in range(1000):
        t = 1.0 + i
        key = (100 + i, int(t * 100))
        book.add(key, (1, 0), PY, None, t)
        live.append(key)
        if len(live) > 4:
            book.end(live.pop(0), t)  # each worker lived 4 s
        assert book.decide().get(key) == "worker"
        book.forget_ended()
        assert len(book.nodes) <= 1 + 4 + 1, len(book.nodes)
    assert book.forgotten >= 990


def test_a_wrappers_programs_are_kept() -> None:
    """Ended children of a wrapper decide that it is one: never forgotten."""
    book = book_with(((1, 0), None, SH, 0.0))
    for i in range(5):
        key = (2 + i, i)
        book.add(key, (1, 0), ["python3", f"step{i}.py"], None, 0.1 + 3 * i)
        book.decide()
        book.end(key, 0.1 + 3 * i + 2 * LASTING_S)
        book.forget_ended()
    book.add((9, 99), (1, 0), PY, None, 20.0)
    book.decide()
    book.forget_ended()
    assert len(book.nodes) == 7
    assert roles(book)[1] == "wrapper" and roles(book)[9] == "master"


def test_forgetting_never_changes_a_decision() -> None:
    """Random trees (wrappers, exec'd and forked children, helpers, short and lasting lives,
    grandchildren) replayed into two books, one forgetting after every decision: every
    process still in it has the role the book that forgets nothing gives it."""
    import random

    programs = [PY, SH, ["redis-server"], ["git", "status"],
                ["/usr/bin/python3", "-c", "from multiprocessing.resource_tracker import main"]]
    forgotten = 0
    for seed in range(200):
        rng = random.Random(seed)
        full, lean = RoleBook((1, 0)), RoleBook((1, 0))
        root_cmd = rng.choice([PY, SH])
        for b in (full, lean):
            b.add((1, 0), None, root_cmd, None, 0.0)
        alive = [(1, 0)]
        cmd: dict[tuple[int, int], list[str]] = {(1, 0): root_cmd}
        t = 0.0
        for step in range(60):
            t += rng.choice([0.05, 0.3, 0.8, 1.5])
            what = rng.random()
            if what < 0.5 and alive:
                parent = rng.choice(alive)
                forked = rng.random() < 0.5
                c = cmd[parent] if forked else rng.choice(programs)
                key = (100 + step, int(t * 100))
                cmd[key] = c
                for b in (full, lean):
                    b.add(key, parent, c, None, t, execd=not forked)
                alive.append(key)
            elif what < 0.9 and len(alive) > 1:
                key = rng.choice(alive[1:])
                alive.remove(key)
                for b in (full, lean):
                    b.end(key, t)
            elif alive:
                key = rng.choice(alive)
                c = rng.choice(programs)
                cmd[key] = c
                for b in (full, lean):
                    b.exec(key, c, None, at=t, event=True)
            full.decide()
            lean.decide()
            lean.forget_ended()
            assert set(lean.nodes) <= set(full.nodes)
            for key, node in lean.nodes.items():
                assert node.role == full.nodes[key].role, (seed, step, key)
        forgotten += lean.forgotten
    assert forgotten >= 1000  # (the comparison is not empty)
