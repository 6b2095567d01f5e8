"""docs/fleet.md stays true: every metric is documented, its rules and panel are valid.

GIVEN docs/fleet.md
WHEN its metric tables, alerting rules and Grafana panel are checked against the code
THEN every exported metric is described, the rules pass `promtool check rules`, and the
panel is JSON whose queries name only metrics memscope exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from memscope.metrics import PROCESS_METRICS, TREE_METRICS

DOC = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"
OWN = {"memscope_info", "memscope_sampler_ticks_total", "memscope_last_tick_timestamp_seconds"}
EXPORTED = {d.name for d in (*PROCESS_METRICS, *TREE_METRICS)} | OWN


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_every_metric_is_documented() -> None:
    text = DOC.read_text()
    missing = [name for name in sorted(EXPORTED) if f"`{name}" not in text]
    assert missing == []


def test_queries_name_only_exported_metrics() -> None:
    queries = "\n".join(_blocks("promql") + _blocks("yaml") + _blocks("json"))
    named = set(re.findall(r"\bmemscope_[a-z_]+", queries))
    assert named
    assert named <= EXPORTED


def test_alerting_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package: prometheus)")
    rules = [b for b in _blocks("yaml") if b.startswith("groups:")]
    assert len(rules) == 1
    path = tmp_path / "rules.yml"
    path.write_text(rules[0])
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rules found" in done.stdout


def test_promql_examples_parse(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package: prometheus)")
    expressions = _blocks("promql")
    assert len(expressions) == 5
    rules = {"groups": [{"name": "doc", "rules": [
        {"record": f"doc:example_{i}", "expr": expr.strip()} for i, expr in enumerate(expressions)
    ]}]}
    path = tmp_path / "examples.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_panel_is_json() -> None:
    (panel_text,) = _blocks("json")
    panel = json.loads(panel_text)
    assert panel["type"] == "timeseries"
    assert [t["refId"] for t in panel["targets"]] == ["A", "B"]
