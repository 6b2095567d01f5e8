"""`memscope check RECORDING`: judge rules on a recording; and `run --check` (options + runner).

Exit codes: 0 every rule holds, 1 a rule is broken, 2 a bad rule, unreadable input, or a
metric the recording lacks.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import click

from memscope.check import (
    DEFAULT_TOLERANCE,
    Baseline,
    CheckReport,
    evaluate,
    load_baseline,
    load_config,
    load_sources,
    parse_tolerance,
    plan_rules,
)
from memscope.check.github import publish
from memscope.check.junit import write_junit
from memscope.check.metrics import MissingMetric
from memscope.check.output import FORMATS, render
from memscope.check.rules import Rule
from memscope.errors import UsageError
from memscope.recording_check import damaged_recording

__all__ = ["CheckRequest", "check_options", "command", "emit_report"]

F = TypeVar("F", bound=Callable[..., Any])


def emit_report(report: CheckReport, fmt: str, junit: str | None) -> int:
    """Print the report, write JUnit, annotate GitHub; return the exit code (2 raises)."""
    render(report, fmt, sys.stdout)
    sys.stdout.flush()
    if junit:
        write_junit(report, junit)
    publish(report, sys.stdout)
    if report.errors:
        first = report.errors[0]
        raise MissingMetric(first.message, hint=first.hint)
    return report.exit_code


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """Rules (and a baseline) validated before anything is recorded or read."""

    rules: list[Rule]
    baseline: Baseline | None
    junit: str | None
    fmt: str
    repeat: int = 1
    allow_missing: bool = False

    @classmethod
    def build(cls, rules: Sequence[str], baseline: str | None, tolerance: str,
              junit: str | None, fmt: str, repeat: int = 1,
              allow_missing: bool = False) -> CheckRequest:
        base = load_baseline(baseline) if baseline else None
        planned = plan_rules(rules, base, parse_tolerance(tolerance))
        return cls(planned, base, junit, fmt, repeat, allow_missing)

    @classmethod
    def from_run_options(
        cls, rules: Sequence[str], baseline: str | None, tolerance: str, repeat: int,
        junit: str | None, fmt: str, allow_missing: bool = False,
    ) -> CheckRequest | None:
        """`run`'s options: None when nothing is to be checked."""
        if not rules and baseline is None:
            if repeat != 1 or junit:
                raise UsageError("--repeat and --junit need --check RULE or --baseline")
            return None
        return cls.build(rules, baseline, tolerance, junit, fmt, repeat, allow_missing)

    def outputs(self, output: str) -> list[str]:
        """Recording paths: `output` itself, or one per repetition."""
        if self.repeat == 1:
            return [output]
        stem, ext = os.path.splitext(output)
        return [f"{stem}.run{i}{ext or '.memscope'}" for i in range(1, self.repeat + 1)]

    def judge(self, paths: Sequence[str]) -> int:
        with damaged_recording("a recording" if len(paths) > 1 else paths[0]):
            report = evaluate(self.rules, load_sources(paths), self.baseline, self.allow_missing)
        return emit_report(report, self.fmt, self.junit)


_junit = click.option("--junit", type=click.Path(dir_okay=False), default=None,
                      help="Also write a JUnit XML file (each rule a testcase).")
_baseline = click.option("--baseline", type=click.Path(dir_okay=False), default=None,
                         help="Compare with a baseline from `memscope baseline save`.")
_allow_missing = click.option(
    "--allow-missing", is_flag=True, default=False,
    help="Judge only the selected processes with a current value; by default a process"
    " without one (or with a COW scan older than its last USS growth) makes the rule exit 2.")
_tolerance = click.option("--tolerance", default=DEFAULT_TOLERANCE, show_default=True,
                          help="Allowed growth over the baseline for metrics no rule names.")


def check_options(func: F) -> F:
    """Add --check/--repeat/--baseline/--tolerance/--junit to `run`; the command receives one
    `check` argument: a CheckRequest, or None when nothing is to be checked."""

    @functools.wraps(func)
    def wrapper(*args: Any, check_rules: tuple[str, ...], repeat: int, baseline: str | None,
                tolerance: str, junit: str | None, check_format: str, allow_missing: bool,
                **kwargs: Any) -> Any:
        kwargs["check"] = CheckRequest.from_run_options(
            list(check_rules), baseline, tolerance, repeat, junit, check_format, allow_missing
        )
        return func(*args, **kwargs)

    for option in (
        click.option("--check-format", type=click.Choice(sorted(FORMATS)), default="text",
                     show_default=True, help="Format of the check report."),
        _junit, _tolerance, _baseline, _allow_missing,
        click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
                     help="With --check: run COMMAND N times and judge the median."),
        click.option("--check", "check_rules", multiple=True, metavar="RULE",
                     help="Judge RULE (e.g. 'worker.uss.peak <= 200MiB') on the recording;"
                     " exit 1 if broken. Repeatable."),
    ):
        wrapper = option(wrapper)
    return cast(F, wrapper)


@click.command("check")
@click.argument("recordings", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-r", "--rule", "rules", multiple=True, metavar="RULE",
              help="SELECTOR.METRIC OP VALUE, e.g. 'worker.uss.peak <= 200MiB'. Repeatable;"
              " default: [tool.memscope.check] rules in ./pyproject.toml.")
@_baseline
@_tolerance
@_allow_missing
@_junit
@click.option("-f", "--format", "fmt", type=click.Choice(sorted(FORMATS)), default="text",
              show_default=True, help="Report format on stdout.")
def command(recordings: tuple[str, ...], rules: tuple[str, ...], baseline: str | None,
            tolerance: str, allow_missing: bool, junit: str | None, fmt: str) -> None:
    """Judge rules on RECORDING(S); several recordings of one workload: the median is judged.

    \b
    Selectors: tree, root, worker (the worst worker), process (the worst process).
    Metrics:   uss.peak pss.peak rss.peak swap.peak uss.last uss.growth
               uss.steady_peak uss.steady_last pss.steady_peak rss.steady_peak
               cow.copied cow.copied_ratio leak.slope; tree also: workers processes
    Values:    B KiB MiB GiB (1024), kB MB GB (1000), 1MiB/min (per s, min, h), 10%,
               baseline + 10%
    Operators: <= < >= > ==

    \b
    Examples:
      memscope check run.memscope -r 'worker.uss.peak <= 120MiB' -r 'tree.pss.peak <= 1.5GiB'
      memscope check run.memscope --baseline base.json --tolerance 5% --junit memscope.xml

    Exit codes: 0 every rule holds, 1 a rule is broken, 2 bad rule or input, or the
    recording lacks a metric a rule needs for a selected process (or its COW scan is stale;
    --allow-missing judges the others).
    """
    config = load_config()
    if tolerance == DEFAULT_TOLERANCE and config.tolerance:
        tolerance = config.tolerance
    request = CheckRequest.build(
        list(rules) or config.rules, baseline or config.baseline, tolerance, junit, fmt,
        allow_missing=allow_missing,
    )
    sys.exit(request.judge(recordings))
