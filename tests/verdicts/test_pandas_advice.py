"""pandas-specific advice on a real pandas fork pool (issue 16, deliverable 6).

GIVEN fixtures/pandas_pool.py on this interpreter (pandas and pyarrow wheels): a parent that
builds a DataFrame with 1M short strings, then a fork Pool(2) whose tasks read the string
column through `.str` (every value increfed)
WHEN it runs under `memscope run` with the column as an object-dtype column, then as an
Arrow-backed one and as a categorical, each worker holding until a full COW scan asked for
(SIGUSR1) after its work, and is stopped with SIGTERM
THEN the object-column report names pandas (the workers map pandas' extension modules) and
gives the pandas-strings advice, with the Arrow/categorical fix, a pandas snippet, and a
saving of at least the bytes of the column's strings (the fixture's ground truth); the Arrow
and categorical reports give no such advice and their workers copy under a tenth of those
bytes in `str`; and the snippet, run on a real CSV, leaves no object column.
"""

from __future__ import annotations

import html as html_lib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from memscope.cli import cli
from memscope.report.json_report import load_schema
from tests.check.helpers import MAIN
from tests.conftest import fixture
from tests.live_recording import full_scan_since, stop_when

pytestmark = pytest.mark.slow
pytest.importorskip("pandas", reason="pandas is not importable (the test extra installs it)")


def record(tmp: Path, storage: str) -> dict[str, Any]:
    """The JSON report of pandas_pool.py --storage STORAGE, plus its text report and the
    fixture's `preloaded` event."""
    out = tmp / f"{storage}.memscope"
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "run", "-q", "-o", str(out), "--", sys.executable,
         fixture("pandas_pool"), "--storage", storage, "--workers", "2", "--delay", "0.5",
         "--hold", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events: dict[str, dict[str, Any]] = {}
    try:
        assert proc.stdout is not None
        worked: set[int] = set()  # worker pids whose work is done
        while len(worked) < 2 and (line := proc.stdout.readline()):
            event = json.loads(line) if line.startswith("{") else {}
            events.setdefault(event.get("event", ""), event)
            if event.get("event") == "worked":
                worked.add(int(event["pid"]))
        # A worker that copied little while working is not rescanned by the adaptive
        # schedule: ask for a scan of every worker (SIGUSR1: one started after the ask, also
        # for a worker whose scan was in flight) and wait for those full scans.
        asked = time.time()
        proc.send_signal(signal.SIGUSR1)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    _, err = stop_when(proc, lambda: all(full_scan_since(out, pid, asked) for pid in worked),
                       "full scans after SIGUSR1")
    assert len(worked) == 2 and proc.returncode == 128 + signal.SIGTERM, err
    assert events["tasks_done"]["chars"] == events["tasks_done"]["expected_chars"]
    report = CliRunner().invoke(cli, ["report", str(out), "--format", "json"])
    assert report.exit_code == 0, report.output
    doc: dict[str, Any] = json.loads(report.stdout)
    jsonschema.validate(doc, load_schema())
    doc["_text"] = CliRunner().invoke(cli, ["report", str(out)]).stdout
    html = tmp / f"{storage}.html"
    assert CliRunner().invoke(cli, ["report", str(out), "--format", "html", "-o",
                                    str(html)]).exit_code == 0
    doc["_html"] = html.read_text()
    doc["_preloaded"] = events["preloaded"]
    return doc


@pytest.fixture(scope="module")
def object_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return record(tmp_path_factory.mktemp("pandas"), "object")


def workers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["processes"] if p["role"] == "worker"]


def str_copied(doc: dict[str, Any]) -> int:
    """Bytes of str objects on the workers' copied pages (latest full scans), summed."""
    return sum(t["bytes"] for p in workers(doc) for t in p["cow"]["by_type"]
               if t["type"] == "str")


def pandas_advice(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in doc["advice"] if a["kind"] == "pandas-strings"]


def test_object_columns_get_the_arrow_or_categorical_advice(object_run: dict[str, Any]) -> None:
    doc = object_run
    truth = doc["_preloaded"]
    assert truth["dtype"] == "object" and truth["bytes"] > 0  # GIVEN: 1M Python str values
    assert "pandas" in doc["frameworks"]
    assert all("pandas" in p["libraries"] for p in workers(doc))
    (root,) = [p for p in doc["processes"] if p["role"] == "root"]
    assert "pandas" in root["libraries"]  # read again when its first worker was seen
    (item,) = pandas_advice(doc)
    # the saving: every string of the column was read by a worker, so its page was copied
    assert item["bytes"] >= truth["bytes"]
    assert item["bytes"] == str_copied(doc)
    assert item["bytes"] <= sum(p["cow"]["copied_bytes"] for p in workers(doc))
    assert item["types"] == ["str"] and item["pids"]
    assert "string[pyarrow]" in item["text"] and "categorical" in item["text"]
    assert item["framework"] == "pandas" and 'astype("string[pyarrow]")' in item["snippet"]
    assert "Arrow-backed or categorical" in doc["_text"]
    assert 'astype("string[pyarrow]")' in doc["_text"]
    # the HTML shows the snippet as code, its lines kept
    snippet = doc["_html"].split('<pre class="snippet">', 1)[1].split("</pre>", 1)[0]
    assert html_lib.unescape(snippet) == item["snippet"]


@pytest.mark.parametrize("storage", ["arrow", "category"])
def test_arrow_and_categorical_columns_copy_no_strings(
        tmp_path: Path, storage: str, object_run: dict[str, Any]) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow is not importable (the test extra has it)")
    doc = record(tmp_path, storage)
    assert doc["_preloaded"]["bytes"] == 0  # GIVEN: no Python str per value
    assert "pandas" in doc["frameworks"]
    assert pandas_advice(doc) == []
    # what is left is the interpreter's own strings, not the column's
    assert str_copied(doc) * 10 < object_run["_preloaded"]["bytes"]
    assert str_copied(doc) * 10 < str_copied(object_run)


def test_the_snippet_converts_object_columns(tmp_path: Path,
                                             object_run: dict[str, Any]) -> None:
    """The advice's snippet, run as printed on a real CSV and on a frame of object columns,
    leaves no object-dtype column."""
    pytest.importorskip("pyarrow", reason="pyarrow is not importable (the test extra has it)")
    (item,) = pandas_advice(object_run)
    csv = tmp_path / "cities.csv"
    csv.write_text("id,city,country\n" + "".join(f"{i},city-{i % 7},c{i % 3}\n"
                                                   for i in range(100)))
    code = (f"path = {str(csv)!r}\n{item['snippet']}\n"
            "assert (df.dtypes != object).all(), df.dtypes\n"
            "import pandas as pd\n"
            "df = pd.DataFrame({'city': pd.Series(['a', 'b'] * 50, dtype=object)})\n"
            + item["snippet"].split("# or convert", 1)[1].split("\n", 1)[1] + "\n"
            "assert str(df['city'].dtype) == 'string', df.dtypes\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_memscope_scan_of_a_pandas_worker(tmp_path: Path) -> None:
    """`memscope scan PID --json` of each worker of the object-column pool (no recording):
    the pandas-strings item with its snippet, together at least the column's str bytes."""
    proc = subprocess.Popen(
        [sys.executable, fixture("pandas_pool"), "--workers", "2", "--delay", "0.5",
         "--hold", "300"], stdout=subprocess.PIPE, text=True)
    items = []
    try:
        assert proc.stdout is not None
        events = []
        while sum(e.get("event") == "worked" for e in events) < 2:
            line = proc.stdout.readline()
            assert line, "the fixture ended before both workers worked"
            events.append(json.loads(line))
        truth = next(e for e in events if e["event"] == "preloaded")["bytes"]
        for worker in (e["pid"] for e in events if e["event"] == "worked"):
            done = CliRunner().invoke(cli, ["scan", str(worker), "--json"])
            assert done.exit_code == 0, done.output
            items += [a for a in json.loads(done.stdout)["advice"]
                      if a["kind"] == "pandas-strings"]
            text = CliRunner().invoke(cli, ["scan", str(worker)]).stdout
            assert "pandas string columns" in text and 'astype("string[pyarrow]")' in text
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert len(items) == 2
    assert sum(a["bytes"] for a in items) >= truth
    assert all(a["framework"] == "pandas" and "string[pyarrow]" in a["snippet"] for a in items)
