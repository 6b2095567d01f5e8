"""Who copies: the HTML copied-bytes chart in Chromium (issue 16, deliverable 5).

GIVEN a real recording of preload_list with 4 workers that copy the preloaded ints at staggered
times, COW-scanned every 0.5 s, kept alive 2 s after their last copy
WHEN its HTML report is opened in Chromium
THEN the overview has a legend naming every worker by pid, one distinct colour per worker,
stepped lines with a marker at each scan, each line carried to the worker's end (the last scan
held, not cut), the pids drawn on the chart, and no console error.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fixture
from tests.report.recordings import memscope

pytestmark = pytest.mark.slow
WORKERS = 4


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("copied")
    rec = tmp / "pl.memscope"
    done = memscope("run", "-q", "-i", "0.1", "--cow-interval", "0.5", "-o", str(rec), "--",
                    sys.executable, fixture("preload_list"), "--workers", str(WORKERS),
                    "--size", "300000", "--delay", "0.5", "--hold", "2.5")
    assert done.returncode == 0, done.stderr
    out = tmp / "report.html"
    done = memscope("report", str(rec), "--format", "html", "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_copied_chart_names_and_colours_each_worker(browser: Any, report: Path,
                                                     tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(report.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    assert errors == []
    assert "Copied bytes per process" in page.locator("#timeline").inner_text()
    legend = page.locator("#overview .u-legend")
    assert legend.count() == 1 and legend.is_visible()  # on main: no legend
    with sqlite3.connect(report.parent / "pl.memscope") as conn:
        (scanned,) = conn.execute("SELECT COUNT(DISTINCT process_id) FROM cow_scans").fetchone()
    assert scanned >= 2  # GIVEN: on a loaded machine the scan budget may skip a worker
    labels = page.evaluate("() => window.memscope.overview.series.slice(1).map(s => s.label)")
    assert len(labels) == scanned and all(lb.startswith("pid ") for lb in labels)
    text = legend.inner_text()
    assert all(lb.split(" ")[1] in text for lb in labels)
    colors = page.evaluate("() => window.memscope.overviewColors.slice(1)")
    assert len(set(colors)) == scanned  # one colour per worker (on main: all the same)
    stepped = page.evaluate(
        "() => window.memscope.overview.series.slice(1).map(s => typeof s.paths)")
    assert stepped == ["function"] * scanned
    # each line reaches its worker's end: the last non-null slot is the carried one, after
    # the last scan
    ext = page.evaluate("""() => {
        const o = window.memscope.overview, e = window.memscope.overviewExtended;
        return o.data.slice(1).map((d, i) => {
            let last = -1, scans = 0;
            d.forEach((v, k) => { if (v !== null) { last = k; scans++; } });
            return [e[i + 1] === undefined ? -1 : e[i + 1], last, scans];
        });
    }""")
    for carried, last, scans in ext:
        assert carried == last and scans >= 2, ext  # a scan, and the carried end
    # markers and pid labels are drawn in each worker's colour on the canvas
    drawn = page.evaluate("""(colors) => {
        const c = document.querySelector('#overview canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const probe = document.createElement('canvas').getContext('2d');
        return colors.map((col) => {
            probe.fillStyle = col; probe.fillRect(0, 0, 1, 1);
            const [r, g, b] = probe.getImageData(0, 0, 1, 1).data;
            let n = 0;
            for (let i = 0; i < d.length; i += 4)
                if (d[i] === r && d[i + 1] === g && d[i + 2] === b && d[i + 3] === 255) n++;
            return n;
        });
    }""", colors)
    assert all(n > 50 for n in drawn), drawn
    page.screenshot(path=str(tmp_path / "copied.png"), full_page=True)
    page.close()
