"""Float options refuse NaN and infinities; JSON output never holds NaN or Infinity."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.hardening._support import invoke, make_recording


@pytest.mark.parametrize("option", ["-i", "--interval", "--duration", "--cow-interval"])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
@pytest.mark.parametrize("command", ["run", "attach"])
def test_non_finite_floats_are_refused(tmp_path: Path, command: str, option: str,
                                       value: str) -> None:
    target = ["--", "true"] if command == "run" else []
    args = [command, option, value, "-o", str(tmp_path / "r.memscope"), *target]
    if command == "attach":
        args.insert(1, "1")
    code, out = invoke(*args)
    assert code == 2, out
    assert "is not a finite number" in out or "not 'auto' or a number" in out
    assert not (tmp_path / "r.memscope").exists()


def test_check_json_with_a_huge_limit_is_refused_not_infinity(tmp_path: Path) -> None:
    rec = make_recording(str(tmp_path / "r.memscope"))
    code, out = invoke("check", rec, "-f", "json", "-r", "tree.pss.peak <= 1e308TiB")
    assert code == 2 and "too large" in out
    assert "Infinity" not in out


def test_json_outputs_are_strict_json(tmp_path: Path) -> None:
    rec = make_recording(str(tmp_path / "r.memscope"))
    code, out = invoke("check", rec, "-f", "json", "-r", "tree.pss.peak <= 1e300TiB")
    assert code == 2  # 1e300 * 2**40 overflows too
    code, out = invoke("check", rec, "-f", "json", "-r", "tree.pss.peak <= 1e290TiB")
    assert code == 0, out
    json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


def test_an_infinite_sample_never_becomes_infinity_in_json(tmp_path: Path) -> None:
    rec = make_recording(str(tmp_path / "r.memscope"))
    conn = sqlite3.connect(rec)
    conn.execute("UPDATE samples SET rss = 1e999, pss = 1e999 WHERE t = 102.0")
    conn.commit()
    conn.close()
    for args in (["report", rec, "-f", "json"], ["check", rec, "-f", "json", "-r",
                                                  "tree.pss.peak <= 1GiB"]):
        code, out = invoke(*args)
        assert "Infinity" not in out and "NaN" not in out
        if code == 0:
            json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        else:
            assert code == 2
            assert len([ln for ln in out.splitlines() if ln.startswith("memscope: error:")]) == 1
