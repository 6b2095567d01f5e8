"""Summary arithmetic on a recording with known numbers, and the text/json reporters."""

from __future__ import annotations

import io
import json
import os

import jsonschema
import pytest

from memscope.analysis.summary import build_summary
from memscope.recording import RecordingWriter, open_recording
from memscope.report import ReportData, get_reporter
from memscope.report.json_report import load_schema, to_document

MiB = 1024 * 1024
NONE12 = [None] * 12


def full(rss: int, pss: int, uss: int, shared: int = 0) -> list[int]:
    # rss, pss, uss, shared_clean, shared_dirty, private_clean, private_dirty, swap, swap_pss,
    # pss_anon, pss_file, pss_shmem, anonymous, rss_shared
    return [rss, pss, uss, shared, 0, 0, uss, 0, 0, pss, 0, 0, uss, shared]


@pytest.fixture
def recording(tmp_path: os.PathLike[str]) -> str:
    path = os.path.join(str(tmp_path), "known.memscope")
    w = RecordingWriter(path, {"mode": "run", "command": ["app"], "started_at": 100.0,
                               "interval_s": 1.0})
    root = w.add_process(pid=1, start_ticks=1, ppid=0, parent_id=None, role="root",
                         cmdline=["app"], exe=None, python_version="3.11", started_at=100.0)
    a = w.add_process(pid=2, start_ticks=2, ppid=1, parent_id=root, role="worker",
                      cmdline=["[bold red]worker[/] <script>alert(1)</script>"], exe=None,
                      python_version="3.11", started_at=101.0)
    b = w.add_process(pid=3, start_ticks=3, ppid=1, parent_id=root, role="worker",
                      cmdline=["app", "worker"], exe=None, python_version="3.11",
                      started_at=101.0)
    w.add_samples([(root, 100.0, *full(50 * MiB, 50 * MiB, 50 * MiB))])
    w.add_samples([
        (root, 101.0, *full(50 * MiB, 20 * MiB, 5 * MiB, 45 * MiB)),
        (a, 101.0, *full(45 * MiB, 15 * MiB, 1 * MiB, 44 * MiB)),
        (b, 101.0, *full(45 * MiB, 15 * MiB, 1 * MiB, 44 * MiB)),
    ])
    # tick 102: a grows (full sample), b and root only counters (pss carried forward)
    w.add_samples([
        (root, 102.0, 50 * MiB, *NONE12, 45 * MiB),
        (a, 102.0, *full(85 * MiB, 55 * MiB, 41 * MiB, 44 * MiB)),
        (b, 102.0, 46 * MiB, *NONE12, 44 * MiB),
    ])
    w.add_tick(100.0, 0.001, 0.002, 1, 1)
    w.add_tick(101.0, 0.001, 0.002, 3, 3)
    w.add_tick(102.0, 0.001, 0.002, 3, 1)
    w.mark_exited(b, 102.5, 0)
    w.set_meta(ended_at=103.0, exit_code=0)
    w.close()
    return path


def test_totals_carry_the_latest_pss_forward(recording: str) -> None:
    s = build_summary(open_recording(recording))
    # tick 100: 50; tick 101: 20+15+15 = 50; tick 102: 20 (carried) + 55 + 15 (carried) = 90
    assert s.totals.peak_pss == 90 * MiB and s.totals.peak_pss_at == 102.0
    # ΣRSS at 102: 50 + 85 + 46
    assert s.totals.peak_rss == 181 * MiB
    assert s.totals.rss_over_pss == pytest.approx(181 / 90)
    assert s.duration_s == 3.0
    assert s.sampler.ticks == 3 and s.sampler.rollups == 5
    assert s.sampler.mean_interval_s == 1.0
    assert s.sampler.cpu_s == pytest.approx(0.006)


def test_growth_and_peaks(recording: str) -> None:
    s = build_summary(open_recording(recording))
    a, b = s.workers
    assert a.first_uss == 1 * MiB and a.last.uss == 41 * MiB and a.uss_growth == 40 * MiB
    assert b.uss_growth == 0
    assert a.peak.rss == 85 * MiB and b.peak.rss == 46 * MiB
    assert b.last.rss == 45 * MiB  # "last" is the last full sample
    assert (a.samples, a.full_samples) == (2, 2) and (b.samples, b.full_samples) == (2, 1)
    assert b.exit_code == 0 and b.exited_at == 102.5
    assert [p.pid for p in s.growers()] == [2, 3]


def test_json_document_validates_against_shipped_schema(recording: str) -> None:
    s = build_summary(open_recording(recording))
    doc = to_document(s)
    jsonschema.validate(doc, load_schema())
    assert doc["totals"] == {"peak_pss": 90 * MiB, "peak_rss": 181 * MiB, "peak_pss_at": 102.0,
                             "peak_rss_at": 102.0}
    assert doc["processes"][1]["peak"] == {"rss": 85 * MiB, "pss": 55 * MiB, "uss": 41 * MiB,
                                           "swap": 0}
    out = io.StringIO()
    rec = open_recording(recording)
    get_reporter("json").render(ReportData(s, rec), out)
    assert json.loads(out.getvalue())["processes"][1]["cmdline"][0].startswith("[bold red]")


def test_text_report_shows_target_names_literally(recording: str) -> None:
    rec = open_recording(recording)
    out = io.StringIO()
    get_reporter("text").render(ReportData(build_summary(rec), rec), out)
    text = out.getvalue()
    # rich markup in a process name is not interpreted
    assert "[bold red]worker[/]" in text
    assert "peak ΣPSS (true footprint): 90.0 MiB" in text
    assert "181.0 MiB" in text and "2.01x" in text
    assert "+40.0 MiB" in text
