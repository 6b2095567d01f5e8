"""HTML report: envelopes, totals, embedding, escaping, and feature sections.

GIVEN a real recording of preload_list (4 workers that copy preloaded ints), or arrays whose
envelope is known by hand
WHEN the HTML reporter renders it
THEN the chart data keeps every extreme, the totals match the summary, the file is one
self-contained document, and nothing from the target or from feature extras becomes markup.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memscope.analysis.summary import build_summary
from memscope.recording import open_recording
from memscope.report.html import json_for_script, render_html
from memscope.report.html_data import Grid, chart_payload, delta_encode, envelope, load_samples
from tests.report.recordings import XSS, memscope, record_preload_list, record_xss

KiB = 1024


@pytest.fixture(scope="module")
def preload(tmp_path_factory: pytest.TempPathFactory) -> str:
    return record_preload_list(str(tmp_path_factory.mktemp("html") / "pl.memscope"))


def decode(enc: list[int | None]) -> list[int | None]:
    out, acc = [], 0
    for d in enc:
        if d is None:
            out.append(None)
        else:
            acc += d
            out.append(acc)
    return out


def embedded_data(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="memscope-data">(.*?)</script>', html, re.S)
    assert m is not None
    data: dict[str, Any] = json.loads(m.group(1))
    return data


# -- envelopes (numbers worked out by hand) ---------------------------------------------


def test_envelope_keeps_extremes_in_time_order() -> None:
    cols = np.array([0, 0, 0, 1, 1, 3])
    vals = np.array([5.0, 9.0, 1.0, 7.0, 2.0, 4.0])
    env = envelope(cols, vals, 4)
    # column 0: max 9 came before min 1; column 1: 7 then 2; column 2 empty; column 3 single
    assert env[:4].tolist() == [9.0, 1.0, 7.0, 2.0]
    assert np.isnan(env[4]) and np.isnan(env[5])
    assert env[6] == 4.0 and np.isnan(env[7])


def test_envelope_skips_missing_rollups() -> None:
    env = envelope(np.array([0, 0, 0]), np.array([np.nan, 3.0, np.nan]), 1)
    assert env[0] == 3.0 and np.isnan(env[1])


def test_delta_encoding_round_trips_kib() -> None:
    values = np.array([np.nan, 10 * KiB, 12 * KiB, np.nan, 7 * KiB])
    assert decode(delta_encode(values)) == [None, 10, 12, None, 7]


def test_a_one_sample_spike_survives_downsampling() -> None:
    t = np.arange(100_000, dtype=np.float64)
    v = np.full(t.size, 100.0 * KiB)
    v[54_321] = 9_000.0 * KiB
    grid = Grid.over(0.0, float(t[-1]), 50)
    env = envelope(grid.column(t), v, grid.buckets)
    assert np.nanmax(env) == 9_000.0 * KiB
    assert np.nanmin(env) == 100.0 * KiB


# -- a real recording ---------------------------------------------------------------------


def test_totals_match_the_summary(preload: str) -> None:
    rec = open_recording(preload)
    try:
        summary = build_summary(rec)
        payload = chart_payload(summary, load_samples(rec))
    finally:
        rec.close()
    totals = payload["totals"]["s"]
    peak_pss_kib = max(v for v in decode(totals["total_pss"]) if v is not None)
    peak_rss_kib = max(v for v in decode(totals["total_rss"]) if v is not None)
    assert abs(peak_pss_kib - summary.totals.peak_pss / KiB) <= 1
    assert abs(peak_rss_kib - summary.totals.peak_rss / KiB) <= 1
    # Every process that was sampled has a block, and workers' USS grew by the copied ints.
    assert set(payload["processes"]) == {str(p.id) for p in summary.processes if p.samples}
    for p in summary.workers:
        uss = [v for v in decode(payload["processes"][str(p.id)]["s"]["uss"]) if v is not None]
        assert max(uss) - min(uss) > 5 * 1024  # 300k ints x ~32 B touched: ~9 MiB copied


def test_report_is_one_offline_file(preload: str, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    proc = memscope("report", preload, "--format", "html", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert "var uPlot" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html
    # The CSP admits exactly the inline scripts, by hash.
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None and "default-src 'none'" in csp.group(1)
    assert csp.group(1).count("'sha256-") == 2
    data = embedded_data(html)
    assert len(data["processes_meta"]) == 5
    assert [p["role"] for p in data["processes_meta"]].count("worker") == 4


# -- safety -------------------------------------------------------------------------------


def test_json_for_script_cannot_close_the_element() -> None:
    text = json_for_script({"a": "</script><!-- \u2028\u2029 & <b>"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"a": "</script><!-- \u2028\u2029 & <b>"}


def test_target_strings_are_escaped(tmp_path: Path) -> None:
    rec_path = record_xss(str(tmp_path / "xss.memscope"))
    out = tmp_path / "xss.html"
    assert memscope("report", rec_path, "--format", "html", "-o", str(out)).returncode == 0
    html = out.read_text()
    assert XSS not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # The placeholder-like argument stayed text: the template is filled in one pass.
    assert html.count('id="memscope-data"') == 1
    assert "{{DATA}}" in html
    assert embedded_data(html)["processes_meta"][0]["label"].count(XSS) == 1


# -- feature sections (slots documented in docs/reports.md) -------------------------------


def test_feature_sections_render_only_when_present(preload: str) -> None:
    rec = open_recording(preload)
    try:
        summary = build_summary(rec)
        samples = load_samples(rec)
        # GIVEN a summary without any feature data (COW scans and leak verdicts removed)
        summary.extra.clear()
        for p in summary.processes:
            p.extra.clear()
        plain = render_html(summary, chart_payload(summary, samples), samples)
        worker = summary.workers[0]
        worker.extra["cow"] = {
            "mode": "pfn", "inherited_bytes": 20 * 2**20, "copied_bytes": 9 * 2**20,
            "shared_bytes": 11 * 2**20, "new_private_bytes": 2**20, "swapped_bytes": 0,
            "by_type": [{"type": "int</td><script>x()</script>", "bytes": 9 * 2**20,
                         "objects": 300_000}],
            "by_cause": {"refcount": 9 * 2**20},
            "timeline": {"t": [worker.started_at, worker.started_at + 1],
                         "shared": [20 * 2**20, 11 * 2**20], "copied": [0, 9 * 2**20],
                         "new_private": [0, 2**20]},
        }
        worker.extra["leak"] = {"verdict": "leak", "slope_bytes_per_s": 4096.0, "r2": 0.97}
        summary.extra["advice"] = [{"title": "gc.freeze()", "text": "<b>freeze</b> before fork",
                                    "saving_bytes": 9 * 2**20}]
        summary.extra["cow"] = {"sites": [{"file": "app.py", "line": 3, "bytes": 9 * 2**20}]}
        rich = render_html(summary, chart_payload(summary, samples), samples)
    finally:
        rec.close()
    for section in ('id="cow"', 'id="leak"', 'id="advice"'):
        assert section not in plain
        assert section in rich
    assert "<script>x()" not in rich and "&lt;script&gt;x()" in rich
    assert "<b>freeze" not in rich and "9.0 MiB" in rich
    assert '<svg class="spark"' in rich and "4.0 KiB/s" in rich
    block = embedded_data(rich)["processes"][str(worker.id)]
    assert [v for v in decode(block["cow"]["s"]["copied"]) if v is not None] == [0, 9 * 1024]


def test_missing_uplot_package_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from memscope.errors import UsageError
    from memscope.report import html as html_module

    def missing(name: str) -> None:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(html_module.metadata, "distribution", missing)
    with pytest.raises(UsageError) as info:
        html_module.uplot_assets()
    assert info.value.exit_code == 2 and "memscope[html]" in (info.value.hint or "")
