"""The HTML report of a real recording, opened in Chromium.

GIVEN `memscope run` of preload_list with 8 workers that copy the preloaded ints (~9 MiB
each), rendered with `memscope report --format html`
WHEN Chromium opens the file (offline, from disk)
THEN every chart drew pixels, the console has no errors, the overview shows each worker's USS
rising to the copied size, toggling a process hides its chart and its line, a drag zooms all
charts to the same time range, tables sort, and a screenshot is saved. A recording whose argv
holds a script tag shows it as text and fires no dialog.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.report.recordings import XSS, memscope, record_preload_list, record_xss

pytestmark = pytest.mark.slow

WORKERS = 8
MiB = 1024 * 1024

PIXELS_JS = """(sel) => Array.from(document.querySelectorAll(sel)).map((c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
})"""


def render_report(recording: str, out: Path) -> Path:
    proc = memscope("report", recording, "--format", "html", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("browser")
    rec = record_preload_list(str(tmp / "pl.memscope"), workers=WORKERS)
    return render_report(rec, tmp / "report.html")


@pytest.fixture
def page(browser: Any, report: Path) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    yield page
    page.close()


def test_charts_draw_without_console_errors(page: Any, tmp_path: Path) -> None:
    totals = page.evaluate(PIXELS_JS, "#totals canvas")
    overview = page.evaluate(PIXELS_JS, "#overview canvas")
    cards = page.evaluate(PIXELS_JS, "#cards canvas")
    assert totals[0] > 2000 and overview[0] > 2000
    assert len(cards) == WORKERS + 1 and min(cards) > 2000
    # The overview's lines are the workers' USS: each rose by the ints it copied.
    peaks = page.evaluate("""() => window.memscope.overview.data.slice(1).map(
        (s) => Math.max(...s.filter((v) => v !== null)))""")
    assert len(peaks) == WORKERS + 1
    assert sorted(peaks)[1] > 8 * MiB  # every worker (the root may be the smallest)
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    assert page.errors == []


def test_hover_shows_values(page: Any) -> None:
    box = page.locator("#overview .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.5)
    assert "MiB" in page.locator("#readout").inner_text()
    legend = page.locator("#totals .u-legend .u-value").all_inner_texts()
    assert any("MiB" in v for v in legend)  # cursors are synced across the timeline charts


def test_toggling_a_process_hides_its_chart_and_line(page: Any) -> None:
    worker = page.locator("tr[data-id] >> nth=1")
    pid_id = worker.get_attribute("data-id")
    box = page.locator(f'input.toggle[data-id="{pid_id}"]')
    box.uncheck()
    assert not page.locator(f'.pcard[data-id="{pid_id}"]').is_visible()
    shown = page.evaluate("(id) => window.memscope.overview.series.map((s) => s.show)", pid_id)
    assert shown.count(False) == 1
    page.get_by_role("button", name="workers only").click()
    assert page.locator(".pcard:visible").count() == WORKERS
    page.get_by_role("button", name="all").click()
    assert page.locator(".pcard:visible").count() == WORKERS + 1
    assert page.locator("input.toggle:checked").count() == WORKERS + 1


def test_dragging_zooms_every_chart_in_time(page: Any) -> None:
    full = page.evaluate("() => [window.memscope.overview.scales.x.min,"
                         " window.memscope.overview.scales.x.max]")
    box = page.locator("#overview .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    ranges = page.evaluate("() => window.memscope.charts.map((c) => [c.scales.x.min,"
                           " c.scales.x.max])")
    lo, hi = ranges[0]
    assert all(r == pytest.approx([lo, hi]) for r in ranges)
    assert full[0] < lo < hi < full[1]
    assert (hi - lo) == pytest.approx((full[1] - full[0]) * 0.3, rel=0.1)
    page.get_by_role("button", name="reset zoom").click()
    reset = page.evaluate("() => [window.memscope.charts[2].scales.x.min,"
                          " window.memscope.charts[2].scales.x.max]")
    assert reset == pytest.approx(full, rel=0.01)


def test_tables_sort(page: Any) -> None:
    header = page.locator("table.procs th", has_text="peak USS")
    header.click()
    col = page.evaluate("""() => Array.from(document.querySelectorAll('table.procs th'))
        .findIndex((th) => th.textContent.startsWith('peak USS'))""")
    values = page.evaluate(f"""() => Array.from(document.querySelectorAll(
        'table.procs tbody tr')).map((r) => parseFloat(r.cells[{col}].dataset.v))""")
    assert values == sorted(values, reverse=True)
    header.click()
    values = page.evaluate(f"""() => Array.from(document.querySelectorAll(
        'table.procs tbody tr')).map((r) => parseFloat(r.cells[{col}].dataset.v))""")
    assert values == sorted(values)


def test_script_in_argv_renders_as_text(browser: Any, tmp_path: Path) -> None:
    out = render_report(record_xss(str(tmp_path / "xss.memscope")), tmp_path / "xss.html")
    page = browser.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    page.wait_for_timeout(300)
    assert dialogs == []
    assert errors == []  # nothing was even blocked by the CSP: no script was injected
    assert XSS in page.locator("h1").inner_text()
    assert XSS in page.locator("table.procs").inner_text()
    assert XSS in page.locator("table.procs td[title]").first.get_attribute("title")
    assert XSS in page.locator(".pcard .ptitle").first.inner_text()
    assert page.locator("img").count() == 0
    page.screenshot(path=str(tmp_path / "xss.png"))
    page.close()


def test_cow_and_leak_slots_draw(browser: Any, report: Path, tmp_path: Path) -> None:
    """The sections other modules fill (docs/reports.md) draw without errors in the browser."""
    from memscope.analysis.summary import build_summary
    from memscope.recording import open_recording
    from memscope.report.html import render_html
    from memscope.report.html_data import chart_payload, load_samples

    rec = open_recording(str(report.parent / "pl.memscope"))
    try:
        summary = build_summary(rec)
        samples = load_samples(rec)
        for i, w in enumerate(summary.workers):
            t = [w.started_at + k * 0.1 for k in range(8)]
            copied = [min(k, 4) * (i + 1) * MiB for k in range(8)]
            w.extra["cow"] = {"copied_bytes": copied[-1], "inherited_bytes": 20 * MiB,
                              "by_type": [{"type": "int", "bytes": copied[-1], "objects": 1}],
                              "timeline": {"t": t, "copied": copied,
                                           "shared": [20 * MiB - c for c in copied]}}
            w.extra["leak"] = {"verdict": "stable", "slope_bytes_per_s": 0.0}
        html = render_html(summary, chart_payload(summary, samples), samples)
    finally:
        rec.close()
    out = tmp_path / "cow.html"
    out.write_text(html)
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    assert errors == []
    assert "Copied bytes per process" in page.locator("#timeline").inner_text()
    peaks = page.evaluate("""() => window.memscope.overview.data.slice(1).map(
        (s) => Math.max(...s.filter((v) => v !== null)))""")
    assert len(peaks) == WORKERS  # one metric per chart: the root has no COW timeline
    assert sorted(peaks)[-1] == 4 * WORKERS * MiB  # the last worker's copied plateau
    # copied bytes exist only at scans: drawn as steps, with a marker on every scan
    marked = page.evaluate("""() => window.memscope.overview.series.slice(1).map(
        (s) => [s.points.size === 5 && s.points.show !== false, typeof s.paths === "function"])""")
    assert marked == [[True, True]] * WORKERS
    steps = page.evaluate("""() => {
        const u = window.memscope.overview;
        const s = u.series[1];
        const p = s.paths(u, 1, 0, u.data[0].length - 1);
        return p && p.stroke ? true : false; }""")
    assert steps
    legend = page.locator(".pcard").nth(1).locator(".u-legend").inner_text()
    assert "copied" in legend and "still shared" in legend
    assert page.locator("#cow table").count() == 2 and page.locator("#leak svg.spark").count()
    page.screenshot(path=str(tmp_path / "cow.png"), full_page=True)
    page.close()
