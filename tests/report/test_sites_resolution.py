"""How each worker's COW sites were resolved is shown beside the sites table, in every format.

GIVEN a real recording of preload_list (schema 2, no COW sites) given, as the leaks hook writes
them, the sites and resolution rows (meta `cow_sites_resolution`) the real estimator makes for a
worker whose copied pages were page-sampled and whose blocks were lookup-sampled (a table
resolver stands for the agent), plus a worker whose resolution failed
WHEN the recording is reported as text, JSON and HTML
THEN each shows, per worker, memscope's time (read / parse / lookups), the share of copied
pages parsed (`page_rate`), blocks looked up and shared, resolved / estimated / untraced
bytes, the share of copied bytes estimated (which matches the two sample rates), and the error.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memscope.cow.site_estimate import OriginCache, estimate_sites, sample_pages
from memscope.cow.sites import SiteBytes
from memscope.leaks.resolution import resolutions_from_meta
from memscope.leaks.store import write_cow_sites
from tests.cow.test_site_estimate import Resolver
from tests.report.recordings import memscope

OLD = Path(__file__).parent.parent / "data" / "recordings" / "schema2-preload_list.memscope"
ERROR = "COW sites not resolved: cannot reach agent of pid 4242"


def _worker() -> tuple[list[SiteBytes], list[dict[str, Any]]]:
    """A worker with 40,000 copied pages of 32-byte blocks, 4,096 parsed (sample_pages), and
    more blocks in them than the lookup budget: both samples are used. Its sites, and the
    resolution rows (with a second worker that failed)."""
    pages = (np.arange(40_000, dtype=np.uint64) + np.uint64(1 << 28)) << np.uint64(12)
    kept, page_rate = sample_pages(pages, 4096)
    starts = (kept[:, None] + np.arange(0, 4096, 32, dtype=np.uint64)).ravel()
    site = np.where(np.arange(len(starts)) % 10 == 0, -1, 0).astype(np.int64)  # 10% untraced
    nbytes = np.full(len(starts), 32, dtype=np.int64)
    found, stats = estimate_sites(starts, nbytes, OriginCache(), Resolver(starts, site),
                                  budget=50_000, seed=5, page_rate=page_rate)
    stats.read_seconds, stats.parse_seconds = 0.125, 0.5  # as the hook times them
    sites = [SiteBytes(e.site, e.bytes, e.objects, e.traceback, e.ci_bytes) for e in found]
    return sites, [{"pid": 4343, "t": 12.5, **stats.as_dict()},
                   {"pid": 4242, "t": 11.0, "error": ERROR}]


def _worker_rows() -> list[dict[str, Any]]:
    return _worker()[1]


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path_factory.mktemp("sites") / "sites.memscope"
    shutil.copy(OLD, path)
    sites, rows = _worker()
    with sqlite3.connect(path) as conn:  # as the leaks hook writes them (store, set_meta)
        worker = conn.execute("SELECT MAX(id) FROM processes").fetchone()[0]
        write_cow_sites(conn, worker, 12.5, sites)  # type: ignore[arg-type]
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                     ("cow_sites_resolution", json.dumps(rows)))
    return path, rows


def _report(path: Path, fmt: str, out: Path) -> str:
    proc = memscope("report", str(path), "--format", fmt, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


def test_rows_carry_both_sample_rates() -> None:
    ok, failed = resolutions_from_meta(_worker_rows())[::-1]
    s = ok.stats
    assert 0.09 < s.page_rate < 0.115  # ~4,096 of 40,000 pages
    assert 0.05 < s.sample_rate < 0.2 and s.looked_up > 0  # 50,000 of ~520,000 blocks
    # Exactly resolved: the lookup sample within the parsed pages; the rest is estimated.
    assert ok.estimated_share == pytest.approx(1 - s.page_rate * s.sample_rate, rel=0.02)
    assert s.untraced_bytes == pytest.approx(0.1 * s.resolved_bytes, rel=0.05)
    assert ok.total_seconds == pytest.approx(0.625 + s.seconds)
    assert failed.pid == 4242 and failed.stats.error == ERROR


def test_damaged_or_older_rows_take_defaults() -> None:
    rows = [{"pid": 7, "t": 1.0, "seconds": 0.5, "blocks": 10, "looked_up": 10,
             "resolved_bytes": 320},  # an older memscope: no page_rate, read/parse times
            {"pid": "8", "blocks": 3}, "junk", {"t": 2.0},  # no integer pid: skipped
            {"pid": 9, "blocks": "many", "page_rate": True, "error": 5, "seconds": None}]
    got = resolutions_from_meta(rows)
    assert [r.pid for r in got] == [7, 9]
    old, bad = got
    assert old.stats.page_rate == 1.0 and old.total_seconds == 0.5
    assert old.estimated_share == 0.0 and "all copied pages parsed" in old.describe()
    assert bad.stats.blocks == 0 and bad.stats.page_rate == 1.0 and bad.stats.error == ""
    assert resolutions_from_meta("nonsense") == [] and resolutions_from_meta(None) == []


def test_text_shows_time_coverage_and_page_share(recording: tuple[Path, list[dict[str, Any]]],
                                                 tmp_path: Path) -> None:
    path, rows = recording
    text = " ".join(_report(path, "text", tmp_path / "r.txt").split())  # unwrap
    s = rows[0]
    share = 1 - s["page_rate"] * s["resolved_bytes"] / (s["resolved_bytes"] + s["sampled_bytes"])
    assert "Copied memory by allocation site" in text
    want = (f"sites of 4343: {0.625 + s['seconds']:.2f} s (read 0.12, parse 0.50, lookups"
            f" {s['seconds']:.2f}); {s['page_rate']:.1%} of the copied pages parsed;"
            f" {s['blocks']:,} blocks ({s['looked_up']:,} looked up, 0 shared),"
            f" {s['sample_rate']:.1%} of them in the lookup sample;")
    assert want in text, text
    assert f"; {share:.0%} of the copied bytes estimated" in text
    assert f"sites of 4242: not resolved: {ERROR}" in text
    # beside the sites table: after it, before the next section
    assert text.index("Copied memory by allocation site") < text.index("sites of 4343")


def test_json_keeps_every_field(recording: tuple[Path, list[dict[str, Any]]],
                                tmp_path: Path) -> None:
    path, rows = recording
    got = json.loads(_report(path, "json", tmp_path / "r.json"))["cow_sites_resolution"]
    by_pid = {r["pid"]: r for r in got}
    for key in ("page_rate", "sample_rate", "read_seconds", "parse_seconds", "seconds",
                "resolved_bytes", "sampled_bytes", "untraced_bytes", "looked_up", "cached"):
        assert by_pid[4343][key] == rows[0][key], key
    s = rows[0]
    assert by_pid[4343]["estimated_share"] == pytest.approx(
        1 - s["page_rate"] * s["resolved_bytes"] / (s["resolved_bytes"] + s["sampled_bytes"]))
    assert by_pid[4242]["error"] == ERROR


def test_html_has_a_sites_section_with_the_resolution(
        recording: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    path, rows = recording
    html = _report(path, "html", tmp_path / "r.html")
    section = re.search(r'<section id="sites">(.*?)</section>', html, re.S)
    assert section is not None
    body = section.group(1)
    assert "app.py:10" in body and "&lt;untraced&gt;" in body  # the sites table
    s = rows[0]
    assert f'data-v="{s["page_rate"]}">{s["page_rate"]:.1%}</td>' in body
    assert f'>{s["looked_up"]:,}</td>' in body and f">{ERROR}</td>" in body
