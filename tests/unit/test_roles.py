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
