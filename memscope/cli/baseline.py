"""`memscope baseline save RECORDING -o BASE.json`: keep a run's metrics to compare later runs.

Later: `memscope check NEW.memscope --baseline BASE.json --tolerance 10%`, or rules such as
`worker.uss.peak <= baseline + 5%`.
"""

from __future__ import annotations

import click

from memscope.check import load_sources, save_baseline
from memscope.quantity import Dimension, format_value
from memscope.recording_check import damaged_recording
from memscope.termsafe import clean

__all__ = ["command"]


@click.group("baseline")
def command() -> None:
    """Save a recording's metrics as a baseline for `memscope check --baseline`."""


@command.command("save")
@click.argument("recording", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Baseline file to write (JSON).")
def save(recording: str, output: str) -> None:
    """Save every metric RECORDING holds (worst process per selector) to OUTPUT.

    \b
    Example:
      memscope baseline save main.memscope -o memscope-baseline.json
      memscope check pr.memscope --baseline memscope-baseline.json --tolerance 10%
    """
    with damaged_recording(recording):
        (source,) = load_sources([recording])
        doc = save_baseline(source, output)
    for key, entry in sorted(doc["metrics"].items()):
        value = format_value(entry["value"], Dimension(entry["dimension"]))
        click.echo(f"{key:28} {value:>14}  {clean(entry.get('process', ''))}".rstrip())
    click.echo(f"memscope: baseline of {len(doc['metrics'])} metrics saved to {clean(output)}",
               err=True)
