"""Rule grammar: every selector, metric, unit and operator; wrong parts are named (exit 2).

GIVEN rule text WHEN parsed THEN the limit is in base units (bytes, bytes/s, fraction, count),
or a UsageError names the part that is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from memscope.check import METRICS, SELECTORS, parse_rule
from memscope.check.rules import BaselineLimit, load_config
from memscope.errors import EXIT_INPUT, InputError, UsageError
from memscope.quantity import Dimension, format_value, parse_value

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(("text", "expected"), [
    ("512B", 512), ("0", 0), ("4KiB", 4 * KiB), ("120MiB", 120 * MiB), ("1.5GiB", 1.5 * GiB),
    ("2TiB", 2 * TiB), ("24 MB", 24_000_000), ("3kB", 3000), ("3KB", 3000), ("2GB", 2e9),
    ("1TB", 1e12), ("64 MiB", 64 * MiB),
])
def test_byte_units_binary_and_si(text: str, expected: float) -> None:
    assert parse_value(text, Dimension.BYTES) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("1MiB/s", MiB), ("1MiB/min", MiB / 60), ("36MB/h", 10_000), ("60 KiB / min", KiB),
])
def test_rates_per_second_minute_hour(text: str, expected: float) -> None:
    assert parse_value(text, Dimension.RATE) == pytest.approx(expected)


def test_percent_and_count() -> None:
    assert parse_value("10%", Dimension.RATIO) == pytest.approx(0.10)
    assert parse_value("0.5%", Dimension.RATIO) == pytest.approx(0.005)
    assert parse_value("4", Dimension.COUNT) == 4


@pytest.mark.parametrize(("text", "dim", "names"), [
    ("12 mb", Dimension.BYTES, "unknown unit 'mb'"),
    ("12 MiB/day", Dimension.RATE, "unknown time unit 'day'"),
    ("12", Dimension.BYTES, "needs a unit"),
    ("10%", Dimension.BYTES, "is a percentage, but the metric needs a size"),
    ("1MiB", Dimension.RATE, "is a size, but the metric needs a rate"),
    ("1MiB/min", Dimension.BYTES, "is a rate, but the metric needs a size"),
    ("lots", Dimension.BYTES, "cannot read value 'lots'"),
    ("1e999MiB", Dimension.BYTES, "not a finite number"),
])
def test_bad_values_name_the_wrong_part(text: str, dim: Dimension, names: str) -> None:
    with pytest.raises(UsageError, match=names.replace("(", r"\(")) as exc:
        parse_value(text, dim)
    assert exc.value.exit_code == EXIT_INPUT


@pytest.mark.parametrize("selector", SELECTORS)
def test_every_selector_with_every_metric_it_supports(selector: str) -> None:
    supported = [m for m in METRICS.values() if selector in m.selectors]
    assert supported
    for metric in supported:
        value = {Dimension.BYTES: "1MiB", Dimension.RATE: "1MiB/min",
                 Dimension.RATIO: "10%", Dimension.COUNT: "3"}[metric.dimension]
        rule = parse_rule(f"{selector}.{metric.name} <= {value}")
        assert (rule.selector, rule.metric, rule.op) == (selector, metric, "<=")
        assert rule.key == f"{selector}.{metric.name}"


def test_issue_examples_parse_to_base_units() -> None:
    assert parse_rule("worker.uss.peak <= 120MiB").limit == 120 * MiB
    assert parse_rule("tree.pss.peak <= 1.5GiB").limit == 1.5 * GiB
    assert parse_rule("worker.cow.copied <= 8MiB").limit == 8 * MiB
    assert parse_rule("tree.cow.copied_ratio <= 10%").limit == pytest.approx(0.1)
    assert parse_rule("process.leak.slope <= 1MiB/min").limit == pytest.approx(MiB / 60)
    assert parse_rule("worker.uss.peak <= baseline + 10%").limit == BaselineLimit(0.1)


@pytest.mark.parametrize("op", ["<=", "<", ">=", ">", "=="])
def test_operators(op: str) -> None:
    rule = parse_rule(f"tree.workers {op} 4")
    assert rule.op == op
    truth = {"<=": (True, True, False), "<": (True, False, False), ">=": (False, True, True),
             ">": (False, False, True), "==": (False, True, False)}[op]
    assert tuple(rule.holds(v, 4) for v in (3, 4, 5)) == truth


def test_baseline_limits_relative_and_absolute() -> None:
    assert parse_rule("worker.uss.peak <= baseline").limit.resolve(100) == 100  # type: ignore[union-attr]
    plus = parse_rule("worker.uss.peak <= baseline + 10%").limit
    minus = parse_rule("worker.uss.peak <= baseline - 5%").limit
    absolute = parse_rule("worker.uss.peak <= baseline + 2MiB").limit
    assert isinstance(plus, BaselineLimit)
    assert isinstance(minus, BaselineLimit)
    assert isinstance(absolute, BaselineLimit)
    assert plus.resolve(50 * MiB) == pytest.approx(55 * MiB)
    assert minus.resolve(100 * MiB) == pytest.approx(95 * MiB)
    assert absolute.resolve(50 * MiB) == 52 * MiB
    with pytest.raises(UsageError, match=r"'10' .* needs a unit"):
        parse_rule("worker.uss.peak <= baseline + 10")


@pytest.mark.parametrize(("text", "names"), [
    ("workers.uss.peak <= 1MiB", "unknown selector 'workers'"),
    ("worker.uss.max <= 1MiB", "unknown metric 'uss.max' for 'worker'"),
    ("worker.uss.peak =< 1MiB", "unknown operator '=<'"),
    ("worker.uss.peak = 1MiB", "unknown operator '='"),
    ("worker.uss.peak != 1MiB", "unknown operator '!='"),
    ("worker.uss.peak 1MiB", "has no operator"),
    ("worker.uss.peak <= 1 mb", "unknown unit 'mb'"),
    ("tree.uss.peak <= 1MiB", "'uss.peak' is not defined for selector 'tree'"),
    ("worker.workers == 2", "'workers' is not defined for selector 'worker'"),
    ("<= 1MiB", "needs SELECTOR.METRIC OP VALUE"),
])
def test_bad_rules_name_the_wrong_part(text: str, names: str) -> None:
    with pytest.raises(UsageError, match=names):
        parse_rule(text)


def test_format_value_per_dimension() -> None:
    assert format_value(120 * MiB, Dimension.BYTES) == "120.0 MiB"
    assert format_value(MiB / 60, Dimension.RATE) == "1.0 MiB/min"
    assert format_value(0.125, Dimension.RATIO) == "12.5%"
    assert format_value(4, Dimension.COUNT) == "4"


def test_pyproject_config(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    assert load_config(str(path)).rules == []
    path.write_text('[tool.memscope.check]\nrules = ["worker.uss.peak <= 200MiB"]\n'
                    'baseline = "base.json"\ntolerance = "5%"\n')
    config = load_config(str(path))
    assert config.rules == ["worker.uss.peak <= 200MiB"]
    assert (config.baseline, config.tolerance) == ("base.json", "5%")
    path.write_text('[tool.memscope.check]\nrules = "worker.uss.peak <= 1MiB"\n')
    with pytest.raises(InputError, match="must be a list of strings"):
        load_config(str(path))
    path.write_text('[tool.memscope.check]\nrule = []\n')
    with pytest.raises(InputError, match="unknown key"):
        load_config(str(path))
    path.write_text('[tool.memscope.check\n')
    with pytest.raises(InputError, match="cannot read"):
        load_config(str(path))


def test_public_names_exist() -> None:
    import memscope.check as check
    import memscope.pytest_plugin as plugin

    for module in (check, plugin):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
