"""Diff rows, noise and escaping on figures captured as numbers (no run needed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from memscope.diff.compare import NOISE_FLOOR, compare
from memscope.diff.render import FORMATS
from memscope.diff.rules import evaluate, parse_fail_rule

MiB = 1 << 20
EVIL = "<script>alert(1)</script>|`x`*"


def test_noise_threshold_floor_relative_and_spread() -> None:
    before = [{("tree", "copied.total"): 100 * MiB, ("worker", "uss.peak"): 10 * MiB}]
    after = [{("tree", "copied.total"): 96 * MiB, ("worker", "uss.peak"): 10 * MiB + 900_000}]
    diff = compare(before, after, ["a"], ["b"])
    by = {r.key: r for r in diff.rows}
    assert by["copied.total"].within_noise  # 4 % < 5 % of 100 MiB
    assert by["worker.uss.peak"].within_noise  # 0.86 MiB < the 1 MiB floor
    assert NOISE_FLOOR["bytes"] == MiB
    after2 = [{("tree", "copied.total"): 90 * MiB}]
    assert not compare(before, after2, ["a"], ["b"]).rows[0].within_noise


def test_relative_rule_and_absolute_rule() -> None:
    diff = compare([{("tree", "copied.total"): 100 * MiB}], [{("tree", "copied.total"): 40 * MiB}],
                   ["a"], ["b"])
    held, kept = evaluate(diff, [parse_fail_rule("copied.total > -50%"),
                                 parse_fail_rule("tree.copied.total < -50MiB")])
    assert not held.failed and abs(held.measured + 0.6) < 1e-9
    assert kept.failed and kept.measured == -60 * MiB


def test_target_strings_are_escaped_in_every_format() -> None:
    key = ("tree", f"copied.type.{EVIL}")
    diff = compare([{key: 50 * MiB}], [{key: 0.0}], [EVIL], ["b"])
    outs = {}
    for name, render in FORMATS.items():
        buf = io.StringIO()
        render(diff, [], buf)
        outs[name] = buf.getvalue()
    assert "<script>" not in outs["html"] and "&lt;script&gt;" in outs["html"]
    assert "<script>" not in outs["markdown"] and "\\|" in outs["markdown"]
    assert EVIL in outs["text"]  # printed literally, not interpreted as rich markup
    assert json.loads(outs["json"])["rows"][0]["metric"] == f"copied.type.{EVIL}"


def test_missing_recording_is_exit_2_in_one_line(tmp_path: Path) -> None:
    memscope = str(Path(sys.executable).parent / "memscope")
    done = subprocess.run([memscope, "diff", str(tmp_path / "no.memscope"),
                           str(tmp_path / "no2.memscope")], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("memscope: error:") and "Traceback" not in done.stderr


def test_repeat_outputs_form_one_side(tmp_path: Path) -> None:
    from memscope.cli.diff import expand_repeats

    src = Path(__file__).parents[1] / "data" / "recordings" / "schema1-preload_list.memscope"
    for n in (1, 2, 10):
        (tmp_path / f"before.run{n}.memscope").write_bytes(src.read_bytes())
    assert expand_repeats(str(tmp_path / "before.memscope")) == [
        str(tmp_path / f"before.run{n}.memscope") for n in (1, 2, 10)]
    memscope = str(Path(sys.executable).parent / "memscope")
    done = subprocess.run([memscope, "diff", str(tmp_path / "before.memscope"), str(src),
                           "--format", "json"], capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert len(doc["before"]) == 3 and all(r["within_noise"] for r in doc["rows"])
