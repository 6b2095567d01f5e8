"""`memscope diff BEFORE AFTER`: did the fix work? Per role, per worker, by type, site, cause."""

from __future__ import annotations

import glob
import io
import os
import re

import click

from memscope.diff.compare import compare
from memscope.diff.render import FORMATS
from memscope.diff.rules import evaluate, parse_fail_rule
from memscope.diff.source import load_figures
from memscope.errors import EXIT_LIMIT, InputError

__all__ = ["command", "expand_repeats"]


def expand_repeats(path: str) -> list[str]:
    """`X.memscope` itself, or when it does not exist the `X.runN.memscope` files that
    `memscope run --repeat N -o X.memscope` writes (in run order)."""
    if os.path.exists(path):
        return [path]
    stem, ext = os.path.splitext(path)
    found = glob.glob(f"{glob.escape(stem)}.run*{glob.escape(ext or '.memscope')}")
    runs = sorted((int(m[1]), f) for f in found
                  if (m := re.fullmatch(r".*\.run(\d+)" + re.escape(ext or ".memscope"), f)))
    return [f for _, f in runs] or [path]


@click.command("diff")
@click.argument("before", type=click.Path(dir_okay=False))
@click.argument("after", type=click.Path(dir_okay=False))
@click.option("--before-also", "before_also", multiple=True, type=click.Path(dir_okay=False),
              help="Another recording of the BEFORE workload (repeatable): the spread between"
                   " repeats widens what counts as noise.")
@click.option("--after-also", "after_also", multiple=True, type=click.Path(dir_okay=False),
              help="Another recording of the AFTER workload (repeatable).")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default="text",
              show_default=True, help="Output format (json: see diff.schema.json).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write here, not stdout.")
@click.option("--fail-if", "fail_if", multiple=True, metavar="RULE",
              help="Exit 1 when the change holds, in the check rule language:"
                   " 'copied.total > -50%' fails unless copying at least halved (repeatable).")
def command(before: str, after: str, before_also: tuple[str, ...], after_also: tuple[str, ...],
            fmt: str, output: str | None, fail_if: tuple[str, ...]) -> None:
    """Compare two recordings: peak/last USS and PSS per role and per matched worker (by role
    and start order), ΣPSS vs ΣRSS, copied bytes by type, cause and site, leak rates; with
    the absolute and relative change and whether it is within run-to-run noise. A side
    recorded with `memscope run --repeat N -o X.memscope` (X.run1.memscope ...) is named X.memscope.

    \b
    Examples:
      memscope diff before.memscope after.memscope
      memscope diff a1.memscope b1.memscope --before-also a2.memscope --after-also b2.memscope
      memscope diff before.memscope after.memscope --format markdown >> $GITHUB_STEP_SUMMARY
      memscope diff before.memscope after.memscope --fail-if 'copied.total > -50%'

    Exit codes: 0 ok, 1 a --fail-if rule held, 2 usage or input error.
    """
    rules = [parse_fail_rule(r) for r in fail_if]
    befores = [p for arg in (before, *before_also) for p in expand_repeats(arg)]
    afters = [p for arg in (after, *after_also) for p in expand_repeats(arg)]
    diff = compare([load_figures(p) for p in befores], [load_figures(p) for p in afters],
                   befores, afters)
    verdicts = evaluate(diff, rules)
    buf = io.StringIO()
    FORMATS[fmt](diff, verdicts, buf)
    if output is None or output == "-":
        click.echo(buf.getvalue(), nl=False)
    else:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(buf.getvalue())
        except OSError as exc:
            raise InputError(f"cannot write {output}: {exc.strerror}") from None
    if any(v.failed for v in verdicts):
        raise click.exceptions.Exit(EXIT_LIMIT)
