"""Start-up stays light: the CLI imports a command's module only when it runs.

Each check runs in a fresh interpreter (this test process has imported everything already)
and reads `sys.modules` after the command line was handled.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import memscope.cli as cli_module
from memscope.cli import cli
from memscope.cli.report import FORMATS
from memscope.errors import UsageError
from memscope.report import REPORTERS, get_reporter

HEAVY = ("numpy", "rich", "prometheus_client", "memscope.cow.scan", "memscope.cow.schedule",
         "memscope.report", "memscope.analysis.summary")

_PROBE = """
import json, sys
from memscope.cli import cli
argv = json.loads(sys.argv[1])
if argv is not None:
    try:
        cli(argv, prog_name="memscope")
    except SystemExit as exc:
        assert exc.code == 0, exc.code
sys.stdout.write("\\n" + json.dumps(sorted(sys.modules)))
"""


def modules_after(argv: list[str] | None) -> set[str]:
    """Module names loaded by a fresh interpreter that imported memscope.cli and ran argv."""
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    return set(json.loads(out.rsplit("\n", 1)[1]))


@pytest.mark.parametrize("argv", [None, ["--help"], ["report", "--help"], ["--version"]],
                         ids=["import", "--help", "report --help", "--version"])
def test_light_paths_load_no_heavy_module(argv: list[str] | None) -> None:
    # GIVEN a fresh interpreter, WHEN it imports memscope.cli and handles argv
    loaded = modules_after(argv)
    # THEN none of the heavy dependencies nor the COW/report machinery was imported
    assert "click" in loaded
    assert sorted(loaded & set(HEAVY)) == []


def test_text_report_loads_no_scanner_and_no_prometheus(tmp_path: os.PathLike[str]) -> None:
    # GIVEN a real recording of a short command
    path = os.path.join(tmp_path, "short.memscope")
    subprocess.run([sys.executable, "-m", "memscope", "run", "-q", "-o", path, "--", sys.executable,
                    "-c", "pass"], check=True, capture_output=True, timeout=120)
    # WHEN it is reported as text
    loaded = modules_after(["report", path])
    # THEN the summary's own needs are loaded; the COW scanner, the exporter, the other
    # reporters, numpy.ma (np.median's NaN check) and rich's emoji table are not
    assert {"numpy", "rich", "memscope.analysis.summary", "memscope.report.text"} <= loaded
    assert sorted(loaded & {"prometheus_client", "http.server", "memscope.cow.scan",
                            "memscope.cow.schedule", "memscope.report.html",
                            "memscope.report.prometheus", "memscope.report.json_report",
                            "memscope.check", "numpy.ma", "rich._emoji_codes"}) == []


def test_commands_that_use_numpy_still_load_it() -> None:
    # The probe can see heavy imports at all: `scan --help` needs the COW scanner's modes.
    loaded = modules_after(["scan", "--help"])
    assert {"numpy", "memscope.cow.scan"} <= loaded


def test_command_table_matches_the_commands() -> None:
    # GIVEN every command imported for real
    real = {name: cli.get_command(click.Context(cli), name) for name in cli_module._COMMANDS}
    for name, command in real.items():
        # THEN its registered name and the first paragraph of its help are the table's
        assert command is not None and command.name == name
        first = inspect.cleandoc(command.help or "").split("\n\n")[0]
        assert cli_module._COMMANDS[name][1] == first, name


def test_lazy_listing_is_the_eager_listing() -> None:
    # GIVEN a plain group holding the real commands (what the CLI used to build eagerly)
    eager = click.Group("memscope", help=cli.help, params=list(cli.params),
                        context_settings=cli.context_settings)
    ctx = click.Context(cli)
    for name in cli_module._COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        eager.add_command(command)
    # and a fresh lazy group (memscope's `cli` may have loaded commands in this process)
    lazy = cli_module._Group("memscope", help=cli.help, params=list(cli.params),
                             context_settings=cli.context_settings)
    assert lazy.commands == {}
    runner = CliRunner()
    # WHEN both print their help
    lazy_help = runner.invoke(lazy, ["--help"], prog_name="memscope").output
    assert lazy.commands == {}  # listing imported nothing
    eager_help = runner.invoke(eager, ["--help"], prog_name="memscope").output
    # THEN the output is the same, command table included
    assert "report    Show what a recording holds" in lazy_help
    assert lazy_help == eager_help


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["nosuch"])
    assert result.exit_code == 2
    assert "No such command 'nosuch'" in result.output


def test_report_formats_listed_without_import_are_the_registered_ones() -> None:
    assert tuple(sorted(REPORTERS)) == FORMATS


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_names_a_reporter_of_that_name(fmt: str) -> None:
    # WHEN a format's reporter is looked up (its module imported then)
    reporter = get_reporter(fmt)
    # THEN it is the class the table names, and it calls itself by that format's name
    assert type(reporter).__name__ == REPORTERS[fmt].split(":")[1]
    assert reporter.name == fmt and reporter.suffix.startswith(".")


def test_an_unknown_format_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown report format 'yaml' \(known: csv, html"):
        get_reporter("yaml")
