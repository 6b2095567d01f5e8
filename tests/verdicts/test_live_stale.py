"""The live view marks a copied value once the worker's USS outgrew the scan behind it."""

from __future__ import annotations

import io

from rich.console import Console

from memscope.live import LiveRow, LiveView, build_table

MiB = 1 << 20


def test_copied_is_marked_after_significant_uss_growth() -> None:
    view = LiveView(Console(file=io.StringIO()))
    # a scan lands: 3 MiB copied while USS is 10 MiB; USS then creeps, then jumps by 4 MiB
    assert view._stale(7, 3 * MiB, 10 * MiB) is False
    assert view._stale(7, 3 * MiB, 11 * MiB) is False  # below max(2 MiB, 10 %)
    assert view._stale(7, 3 * MiB, 14 * MiB) is True
    assert view._stale(7, 5 * MiB, 14 * MiB) is False  # a new scan: current again
    assert view._stale(8, None, 14 * MiB) is False  # no scan, no marker
    out = io.StringIO()
    Console(file=out, width=120).print(build_table(
        [LiveRow(1, "worker", uss=14 * MiB, copied=3 * MiB, stale=True),
         LiveRow(2, "worker", uss=12 * MiB, copied=3 * MiB)], 10))
    lines = out.getvalue().splitlines()
    assert any(" 1 │ worker" in ln and "3.0 MiB *" in ln for ln in lines)
    assert any(" 2 │ worker" in ln and "3.0 MiB *" not in ln for ln in lines)
