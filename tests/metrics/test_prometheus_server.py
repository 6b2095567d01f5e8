"""End to end: a real Prometheus server scrapes `memscope run --serve-metrics` on loopback.

GIVEN Debian's prometheus binary on 127.0.0.1 (temporary TSDB, 1 s scrape interval) and
`memscope run --serve-metrics 127.0.0.1:0` recording fixtures/preload_list.py (2 workers that
copy their preloaded ints)
WHEN Prometheus has scraped the endpoint at least twice after the workers did their work
THEN its HTTP API returns one USS series per worker slot, each value is exactly the USS the
recording holds for that worker's sample at the exported sample timestamp, that sample is
at most a couple of sampling intervals older than the scrape, and the value shows the copied
ints. Copied-bytes series are present exactly when the recording has COW scans.
Every address is on loopback; Prometheus and memscope are stopped even when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from memscope.recording import open_recording

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SIZE = 300_000  # preloaded ints; each worker copies the 32-byte block of every one
INTERVAL = 0.25
DEADLINE_S = 60.0


def _prometheus() -> str:
    import shutil

    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("the prometheus server binary is not installed (apt-get install prometheus)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(what: str, check: Callable[[], Any], log: Callable[[], str]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{log()}")


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Lines:
    """Lines of a pipe, read on a thread (so the writer never blocks)."""

    lines: list[str] = field(default_factory=list)

    def follow(self, stream: Any) -> None:
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))


class PromAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=5) as response:
            body: bytes = response.read()
            return body

    def ready(self) -> bool:
        try:
            return self.get("/-/ready").startswith(b"Prometheus Server is Ready")
        except OSError:
            return False

    def query(self, promql: str, at: float) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
        doc = json.loads(self.get(f"/api/v1/query?{query}"))
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result


@dataclass
class Scraped:
    recording: Path
    at: float
    uss: list[dict[str, Any]]
    pid: list[dict[str, Any]]
    sampled: list[dict[str, Any]]
    scraped_at: list[dict[str, Any]]
    copied: list[dict[str, Any]]
    workers: list[dict[str, Any]]
    worker_pids: list[int]


def _by_slot(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["slot"]: float(r["value"][1]) for r in result}


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    binary = _prometheus()
    tmp = tmp_path_factory.mktemp("prometheus")
    recording = tmp / "run.memscope"
    with contextlib.ExitStack() as stack:
        memscope = subprocess.Popen(
            [sys.executable, "-c", "from memscope.cli import main; main()", "run", "-q",
             "-i", str(INTERVAL), "-o", str(recording), "--serve-metrics", "127.0.0.1:0", "--",
             sys.executable, str(FIXTURES / "preload_list.py"), "--workers", "2",
             "--size", str(SIZE), "--delay", "0.3", "--hold", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        stack.callback(_stop, memscope, signal.SIGINT)
        events, errors = Lines(), Lines()
        events.follow(memscope.stdout)
        errors.follow(memscope.stderr)

        def memscope_log() -> str:
            return "\n".join(errors.lines + events.lines)

        url = _wait("memscope's endpoint", lambda: next(
            (ln.rsplit(" ", 1)[-1] for ln in errors.lines if "serving metrics on" in ln), None
        ), memscope_log)
        target = urllib.parse.urlsplit(url).netloc
        assert target.startswith("127.0.0.1:")

        port = _free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: memscope\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        log = tmp / "prometheus.log"
        with open(log, "w") as log_file:
            prometheus = subprocess.Popen(
                [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                 f"--storage.tsdb.path={tmp / 'tsdb'}", "--log.level=warn"],
                stdout=log_file, stderr=subprocess.STDOUT,
            )
        stack.callback(_stop, prometheus)
        api = PromAPI(port)

        def ready() -> bool:
            if prometheus.poll() is not None:
                pytest.fail(f"prometheus exited with {prometheus.returncode}\n{log.read_text()}")
            return api.ready()

        _wait("Prometheus to be ready", ready, log.read_text)

        worked = _wait("both workers to finish their work", lambda: [
            json.loads(ln) for ln in events.lines if '"event": "worked"' in ln
        ] if sum('"event": "worked"' in ln for ln in events.lines) == 2 else None, memscope_log)
        worked_at = time.time()

        def two_scrapes_after_work() -> bool:
            now = time.time()
            window = max(1, int(now - worked_at))
            result = api.query(
                f'count_over_time(memscope_process_uss_bytes{{role="worker"}}[{window}s])', now
            )
            return len(result) == 2 and all(float(r["value"][1]) >= 2 for r in result)

        _wait("two scrapes after the work", two_scrapes_after_work, log.read_text)
        at = time.time()
        data = Scraped(
            recording=recording,
            at=at,
            uss=api.query('memscope_process_uss_bytes{role="worker"}', at),
            pid=api.query('memscope_process_pid{role="worker"}', at),
            sampled=api.query('memscope_process_sample_timestamp_seconds{role="worker"}', at),
            scraped_at=api.query('timestamp(memscope_process_uss_bytes{role="worker"})', at),
            copied=api.query('memscope_process_cow_copied_bytes{role="worker"}', at),
            workers=api.query("memscope_tree_workers", at),
            worker_pids=sorted(e["pid"] for e in worked),
        )
        _stop(prometheus)
        _stop(memscope, signal.SIGINT)  # ends the fixture; the recording is closed
        assert memscope.returncode == 128 + signal.SIGINT, memscope_log()
        yield data


def test_prometheus_has_one_uss_series_per_worker_slot(scraped: Scraped) -> None:
    assert sorted(_by_slot(scraped.uss)) == ["0", "1"]
    assert {r["metric"]["command"] for r in scraped.uss} == {"preload_list.py"}
    assert {r["metric"]["job"] for r in scraped.uss} == {"memscope"}
    assert sorted(int(v) for v in _by_slot(scraped.pid).values()) == scraped.worker_pids
    assert [float(r["value"][1]) for r in scraped.workers] == [2.0]
    assert all("pid" not in r["metric"] for r in scraped.uss)


def test_values_match_the_recording_within_sampling_skew(scraped: Scraped) -> None:
    uss, pids = _by_slot(scraped.uss), _by_slot(scraped.pid)
    sampled = _by_slot(scraped.sampled)
    scrape_t = {r["metric"]["slot"]: float(r["value"][1]) for r in scraped.scraped_at}
    rec = open_recording(str(scraped.recording))
    try:
        for slot, value in uss.items():
            process = next(p for p in rec.processes if p.pid == int(pids[slot]))
            rows = [s for s in rec.samples(process.id) if s["uss"] is not None]
            at_sample = [s for s in rows if abs(s.t - sampled[slot]) < 1e-3]
            assert len(at_sample) == 1, (slot, sampled[slot])
            assert at_sample[0]["uss"] == value
            skew = scrape_t[slot] - sampled[slot]
            assert -0.5 <= skew <= 2 * INTERVAL + 1.0, skew
            # The scraped value shows the copy: at least 80 % of the ints' 32-byte blocks
            # more than the worker's first full sample.
            first = rows[0]["uss"]
            assert first is not None
            assert value - first >= 0.8 * SIZE * 32, (value, first)
    finally:
        rec.close()


def test_copied_bytes_series_exist_exactly_when_cow_scans_do(scraped: Scraped) -> None:
    rec = open_recording(str(scraped.recording))
    try:
        scans: dict[int, list[tuple[float, int]]] = {}
        if rec.has_table("cow_scans"):
            for pid, t, copied in rec.conn.execute("SELECT pid, t, copied_bytes FROM cow_scans"):
                scans.setdefault(pid, []).append((t, copied))
    finally:
        rec.close()
    pids = {slot: int(pid) for slot, pid in _by_slot(scraped.pid).items()}
    scrape_t = {r["metric"]["slot"]: float(r["value"][1]) for r in scraped.scraped_at}
    copied = _by_slot(scraped.copied)
    for slot, pid in pids.items():
        before = [c for t, c in scans.get(pid, []) if t <= scrape_t[slot]]
        settled = [c for t, c in scans.get(pid, []) if t <= scrape_t[slot] - 2 * INTERVAL]
        if settled:  # scanned well before the scrape: the series must be there
            assert slot in copied
        if slot in copied:  # and a series is always some scan's value, never invented
            assert int(copied[slot]) in before
            # Ground truth: the worker copied (at least) the 32-byte block of every int.
            assert copied[slot] >= 0.8 * SIZE * 32
        if not before:
            assert slot not in copied
