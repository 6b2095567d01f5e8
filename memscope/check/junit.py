"""JUnit XML: one testsuite, each rule a testcase; a broken rule is a <failure>, a rule that
could not be checked an <error>. The shape is the one Jenkins, GitLab and GitHub test
reporters read (validated in tests against tests/check/data/junit.xsd)."""

from __future__ import annotations

import io
import socket
import time
import xml.etree.ElementTree as ET

from memscope.check.evaluate import CheckReport
from memscope.outputs import write_text_atomically

__all__ = ["to_junit", "write_junit"]


def to_junit(report: CheckReport, *, suite: str = "memscope check") -> ET.Element:
    failures, errors = len(report.failed), len(report.errors)
    root = ET.Element("testsuites", name=suite, tests=str(len(report.results)),
                      failures=str(failures), errors=str(errors), time="0")
    ts = ET.SubElement(
        root, "testsuite", name=suite, tests=str(len(report.results)), failures=str(failures),
        errors=str(errors), skipped="0", time="0",
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        hostname=socket.gethostname(),
    )
    props = ET.SubElement(ts, "properties")
    for i, path in enumerate(report.recordings):
        ET.SubElement(props, "property", name=f"recording.{i}", value=path)
    if report.baseline:
        ET.SubElement(props, "property", name="baseline", value=report.baseline)
    for r in report.results:
        case = ET.SubElement(ts, "testcase", name=r.rule.text, classname="memscope.check",
                             time="0")
        line = r.describe()
        if r.verdict == "fail":
            ET.SubElement(case, "failure", message=line, type="MemoryLimitExceeded").text = line
        elif r.verdict == "error":
            text = line + (f"\nhint: {r.hint}" if r.hint else "")
            ET.SubElement(case, "error", message=line, type="MissingMetric").text = text
        else:
            ET.SubElement(case, "system-out").text = line
    return root


def write_junit(report: CheckReport, path: str) -> None:
    tree = ET.ElementTree(to_junit(report))
    ET.indent(tree)
    buf = io.BytesIO()
    tree.write(buf, encoding="utf-8", xml_declaration=True)
    text = buf.getvalue().decode("utf-8")
    # Atomic, and never over a device, FIFO, symlink or a file memscope did not write.
    write_text_atomically(path, lambda out: out.write(text))
