"""Why a scan used the exclusive bit, and what `scan` says when it cannot compare PFNs."""

from __future__ import annotations

import json
import subprocess

import pytest

from memscope.cow.scan import REASON_HIDDEN
from memscope.procfs import ProcFS
from tests.hardening._support import HAVE_SETPRIV, NOCAP, memscope_cmd
from tests.hardening.test_errors_doc import forked_target


@pytest.mark.skipif(not HAVE_SETPRIV, reason="needs root and setpriv to drop capabilities")
def test_scan_without_privilege_says_why_it_used_the_exclusive_bit() -> None:
    proc, child = forked_target(NOCAP)
    try:
        text = subprocess.run([*NOCAP, *memscope_cmd("scan", str(child))],
                              capture_output=True, text=True, timeout=120)
        as_json = subprocess.run([*NOCAP, *memscope_cmd("scan", "--json", str(child))],
                                 capture_output=True, text=True, timeout=120)
        forced = subprocess.run(memscope_cmd("scan", "--mode", "exclusive-bit", str(child)),
                                capture_output=True, text=True, timeout=120)
        root = subprocess.run(memscope_cmd("scan", "--mode", "pfn", "--json", str(child)),
                              capture_output=True, text=True, timeout=120)
    finally:
        proc.communicate("", timeout=60)
    assert text.returncode == 0, text.stderr
    assert f"mode exclusive-bit: {REASON_HIDDEN}" in text.stdout
    doc = json.loads(as_json.stdout)
    assert doc["cow"]["mode"] == "exclusive-bit" and doc["mode_reason"] == REASON_HIDDEN
    # the copy the child made is seen without privilege too (300k ints: > 4 MiB)
    assert doc["cow"]["copied_bytes"] > 4 * 1024 * 1024
    assert forced.returncode == 0 and "mode exclusive-bit: chosen with --mode" in forced.stdout
    # as root, --mode pfn is honoured and agrees on what was copied (within 10 %)
    assert root.returncode == 0, root.stderr
    pfn = json.loads(root.stdout)
    assert pfn["cow"]["mode"] == "pfn" and pfn["mode_reason"] == ""
    assert abs(pfn["cow"]["copied_bytes"] - doc["cow"]["copied_bytes"]) <= (
        0.1 * doc["cow"]["copied_bytes"])


def test_kthreadd_is_a_kernel_thread_and_init_is_not() -> None:
    procfs = ProcFS()
    assert procfs.stat(2).kernel_thread
    assert not procfs.stat(1).kernel_thread
