"""HTML section for COW allocation sites (`--trace-sites`): copied bytes by site summed over
the workers, and beside it how each worker's sites were resolved (memscope.leaks.resolution):
memscope's time, the shares of copied pages parsed and of blocks looked up, resolved /
estimated / untraced bytes, or the error. Every text goes through `esc()`."""

from __future__ import annotations

from memscope.analysis.summary import Summary
from memscope.report.html_sections import _bytes_cell, _cell, table

__all__ = ["sites_section"]


def _seconds(v: float) -> str:
    return _cell(f"{v:.2f} s", v, "num")


def _share(v: float) -> str:
    return _cell(f"{v:.1%}", v, "num")


def sites_section(s: Summary) -> str | None:
    if s.sites is None:
        return None
    parts = ["<h2>Copied memory by allocation site</h2>"]
    if s.sites.total:
        rows = [
            "<tr>" + _cell(str(r["site"])) + _bytes_cell(r["bytes"])
            + _cell(f"{r['objects']:,}", r["objects"], "num")
            + _cell(str(r["workers"]), r["workers"], "num") + "</tr>"
            for r in s.sites.total
        ]
        parts.append("<h3>All workers</h3>" + table(
            [("site", "text"), ("copied", "num"), ("objects", "num"), ("workers", "num")], rows))
    if s.sites.resolution:
        rows = []
        for r in s.sites.resolution:
            st = r.stats
            if st.error:
                rows.append("<tr>" + _cell(str(r.pid), r.pid, "num")
                            + '<td colspan="13"></td>' + _cell(st.error) + "</tr>")
                continue
            rows.append(
                "<tr>" + _cell(str(r.pid), r.pid, "num") + _seconds(r.total_seconds)
                + _seconds(st.read_seconds) + _seconds(st.parse_seconds) + _seconds(st.seconds)
                + _share(st.page_rate) + _cell(f"{st.blocks:,}", st.blocks, "num")
                + _cell(f"{st.looked_up:,}", st.looked_up, "num")
                + _cell(f"{st.cached:,}", st.cached, "num") + _share(st.sample_rate)
                + _bytes_cell(st.resolved_bytes) + _bytes_cell(st.sampled_bytes)
                + _bytes_cell(st.untraced_bytes) + _share(r.estimated_share) + _cell("")
                + "</tr>")
        cols = [("pid", "num"), ("time", "num"), ("read", "num"), ("parse", "num"),
                ("lookups", "num"), ("pages parsed", "num"), ("blocks", "num"),
                ("looked up", "num"), ("shared", "num"), ("lookup sample", "num"),
                ("resolved", "num"), ("estimated", "num"), ("untraced", "num"),
                ("copied bytes estimated", "num"), ("error", "text")]
        parts.append("<h3>How each worker's sites were resolved</h3>" + table(cols, rows))
    return f'<section id="sites">{"".join(parts)}</section>'
