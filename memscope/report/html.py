"""Self-contained HTML report: one file, no network, charts drawn by uPlot.

uPlot's JavaScript and CSS are read at render time from the installed `uplot-python` package
(the `html` extra) and inlined, so the file works offline and nothing is fetched from a CDN.
The chart data is embedded as JSON in a non-executable <script type="application/json">
block, with <, >, &, U+2028 and U+2029 escaped so no string can close the element. A
Content-Security-Policy allows only the two inline scripts by hash, so even a markup bug
could not run injected script.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from importlib import metadata, resources
from pathlib import Path
from typing import Any, ClassVar, TextIO

import numpy as np

from memscope import __version__
from memscope.analysis.summary import Summary
from memscope.errors import UsageError
from memscope.frameworks import display_name
from memscope.report._base import ReportData
from memscope.report.html_data import Samples, chart_payload, load_samples
from memscope.report.html_features import (
    advice_section,
    cow_section,
    leak_section,
    notes_section,
)
from memscope.report.html_sections import esc, header, process_table, short_command, tree_order
from memscope.report.html_sites import sites_section

__all__ = ["HtmlReporter", "json_for_script", "render_html", "uplot_assets"]

_UPLOT_DIST = "uplot-python"
_UPLOT_FILES = ("uplot/static/uPlot.iife.js", "uplot/static/uPlot.min.css")
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}
_JSON_UNSAFE = re.compile("[<>&\u2028\u2029]")
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


def json_for_script(value: Any) -> str:
    """JSON that is inert inside <script>: no '</script', '<!--', or JS line terminators."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return _JSON_UNSAFE.sub(lambda m: _JSON_ESCAPES[m.group(0)], text)


def uplot_assets() -> tuple[str, str]:
    """(uPlot JS, uPlot CSS) from the installed uplot-python distribution.

    Located through the distribution's metadata, so the `uplot` package (and what it
    imports) is never imported.
    """
    hint = "pip install 'memscope[html]' (the HTML report embeds uPlot from uplot-python)"
    try:
        dist = metadata.distribution(_UPLOT_DIST)
    except metadata.PackageNotFoundError:
        raise UsageError("the HTML report needs the uplot-python package", hint=hint) from None
    texts = []
    for name in _UPLOT_FILES:
        path = dist.locate_file(name)
        try:
            texts.append(Path(str(path)).read_text(encoding="utf-8"))
        except OSError:
            raise UsageError(f"uplot-python is installed without {name}", hint=hint) from None
    js, css = texts
    if re.search(r"</(script|style)", js + css, re.IGNORECASE):
        raise UsageError("the installed uPlot assets contain a closing tag; cannot inline them")
    return js, css


def _asset(name: str) -> str:
    return resources.files("memscope.report").joinpath(f"html_assets/{name}").read_text("utf-8")


def _csp(scripts: list[str]) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode() + "'"
        for s in scripts
    )
    return f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; img-src data:"


def _sparklines(samples: Samples) -> Any:
    pid = samples.process_id

    def spark(process_id: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.searchsorted(pid, [process_id, process_id + 1])
        return samples.t[lo:hi], samples.values["uss"][lo:hi]

    return spark


def render_html(summary: Summary, data: dict[str, Any], samples: Samples) -> str:
    uplot_js, uplot_css = uplot_assets()
    report_js = _asset("report.js")
    data = {
        **data,
        "started_at": summary.started_at,
        "processes_meta": [
            {"id": str(p.id), "pid": p.pid, "role": p.role, "label": short_command(p, 120),
             "name": display_name(p),
             "end": (p.exited_at if p.exited_at is not None else summary.ended_at)
             - summary.started_at}
            for p, _ in tree_order(summary.processes)
        ],
    }
    has_cow_timeline = any("cow" in block for block in data["processes"].values())
    features = [cow_section(summary), sites_section(summary),
                leak_section(summary, _sparklines(samples)),
                advice_section(summary), notes_section(summary)]
    n_cards = len(data["processes"])
    parts = {
        "CSP": _csp([uplot_js, report_js]),  # base64 and keywords: nothing to escape
        "VERSION": esc(__version__),
        "TITLE": esc(" ".join(summary.command)[:200] or "recording"),
        "UPLOT_CSS": uplot_css,
        "CSS": _asset("report.css"),
        "HEADER": header(summary),
        "OVERVIEW_TITLE": "Copied bytes per process" if has_cow_timeline
        else "USS (private memory) per process",
        "PROCESS_TABLE": process_table(summary),
        "FEATURES": "".join(f for f in features if f),
        "CARDS_HINT": esc(
            f"{n_cards} processes. Stacked: private (USS) and shared resident memory, with PSS"
            " and RSS as lines; hover for values. Charts are drawn as they scroll into view."),
        "DATA": json_for_script(data),
        "UPLOT_JS": uplot_js,
        "REPORT_JS": report_js,
    }
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], _asset("template.html"))


class HtmlReporter:
    name: ClassVar[str] = "html"
    suffix: ClassVar[str] = ".html"

    def render(self, data: ReportData, out: TextIO) -> None:
        samples = load_samples(data.recording)
        payload = chart_payload(data.summary, samples)
        out.write(render_html(data.summary, payload, samples))
