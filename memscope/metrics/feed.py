"""The sampler hook that turns each tick into a `Snapshot` for the exporter.

It runs on the sampler's thread after the tick's samples were written, so it reads what the
sampler already has (latest rollups, the processes table of the recording being written) and
never touches /proc itself. Values other features measure arrive through *process sources*:
callables `fn(ctx) -> {record_id: {key: value}}` with keys from `PROCESS_METRICS`, passed to
`MetricsFeed(sources=...)`. The COW source is built in: the latest scan of each process through
the COW store's reader (memscope.cow.store.latest_and_peak). A source that fails is dropped for
the rest of the run (the recording must go on) and reported once on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence

from memscope.cow.store import ScanPoint, latest_and_peak, read_scan_points
from memscope.metrics.labels import SlotAllocator, command_name
from memscope.metrics.snapshot import PROCESS_METRICS, ProcessPoint, Snapshot, SnapshotBox
from memscope.procfs import Rollup
from memscope.recording import RecordingWriter
from memscope.sampler import Session, TickContext

__all__ = ["CowScansSource", "MetricsFeed", "ProcessSource"]

ProcessSource = Callable[[TickContext], Mapping[int, Mapping[str, float]]]

_CORE = ("uss", "pss", "rss", "swap", "pid", "started", "sampled")
_EXTRA_KEYS = frozenset(d.key for d in PROCESS_METRICS) - frozenset(_CORE)
_SUMMED = ("pss", "uss", "rss", "swap", "cow_copied")


class CowScansSource:
    """The latest COW scan of each process, read incrementally through the COW store."""

    def __init__(self) -> None:
        self._last_id = 0
        self._scans: dict[int, tuple[ScanPoint, ScanPoint]] = {}

    def __call__(self, ctx: TickContext) -> Mapping[int, Mapping[str, float]]:
        points = read_scan_points(ctx.writer.conn, self._last_id)
        if points:
            self._last_id = points[-1].scan_id
            latest_and_peak(points, self._scans)
        live = {m.record_id for m in ctx.members}
        for gone in [k for k in self._scans if k not in live]:
            del self._scans[gone]
        return {
            pid: {"cow_copied": latest.copied_bytes, "cow_shared": latest.shared_bytes,
                  "cow_inherited": latest.inherited_bytes}
            for pid, (latest, _peak) in self._scans.items()
        }


class MetricsFeed:
    """TickHook: build this tick's snapshot and publish it into `box`."""

    def __init__(
        self, box: SnapshotBox, mode: str = "", sources: Sequence[ProcessSource] = ()
    ) -> None:
        self.box = box
        self.sources = list(sources)
        self.mode = mode
        self.ticks = 0
        self._slots = SlotAllocator()
        self._names: dict[int, tuple[str, str]] = {}  # record id -> (cmdline json, name)
        self._sampled: dict[int, tuple[Rollup, float]] = {}
        self._peak_pss = 0.0
        self._cow = CowScansSource()
        self._failed: set[int] = set()

    def _commands(self, ctx: TickContext, ids: list[int]) -> dict[int, tuple[str, float]]:
        """record id -> (command label, started_at) of `ids` (primary-key lookups).

        Read every tick because the sampler rewrites a process's cmdline when it execs.
        """
        out: dict[int, tuple[str, float]] = {}
        marks = ", ".join("?" * len(ids))
        for record_id, raw, started in ctx.writer.conn.execute(
            f"SELECT id, cmdline, started_at FROM processes WHERE id IN ({marks})", ids
        ):
            cached = self._names.get(record_id)
            if cached is None or cached[0] != raw:
                try:
                    argv = json.loads(raw)
                except ValueError:
                    argv = []
                cached = (raw, command_name([str(a) for a in argv]))
                self._names[record_id] = cached
            out[record_id] = (cached[1], started)
        return out

    def _extra(self, ctx: TickContext) -> dict[int, dict[str, float]]:
        merged: dict[int, dict[str, float]] = {}
        sources: list[ProcessSource] = [self._cow, *self.sources]
        for source in sources:
            if id(source) in self._failed:
                continue
            try:
                values = source(ctx)
                for record_id, row in values.items():
                    target = merged.setdefault(record_id, {})
                    for key, value in row.items():
                        if key in _EXTRA_KEYS and value is not None:
                            target[key] = float(value)
            except Exception as exc:  # a broken source or foreign schema must not stop sampling
                self._failed.add(id(source))
                name = getattr(source, "__qualname__", type(source).__name__)
                print(f"memscope: warning: metrics source {name} disabled: {exc}", file=sys.stderr)
        return merged

    def start(self, session: Session) -> None:
        pass

    def close(self, writer: RecordingWriter) -> None:
        pass  # nothing to persist: the endpoint serves the last snapshot until it closes

    def __call__(self, ctx: TickContext) -> None:
        self.tick(ctx)

    def tick(self, ctx: TickContext) -> None:
        self.ticks += 1
        # Birth order (pid breaks ties within a clock tick): new processes take slots in it.
        live = sorted(
            (m for m in ctx.members if not m.exited and m.record_id >= 0),
            key=lambda m: (m.start_ticks, m.pid),
        )
        self._slots.retain({m.key for m in live})
        live_ids = {m.record_id for m in live}
        commands = self._commands(ctx, sorted(live_ids))
        extra = self._extra(ctx)
        for gone in [k for k in self._sampled if k not in live_ids]:
            del self._sampled[gone]
        for gone in [k for k in self._names if k not in commands]:
            del self._names[gone]

        points: list[ProcessPoint] = []
        tree: dict[str, float] = {}
        for member in live:
            values: dict[str, float] = {"pid": member.pid}
            command, started = commands.get(member.record_id, ("unknown", None))
            if started is not None:
                values["started"] = started
            rollup = ctx.latest.get(member.record_id)
            if rollup is not None:
                previous = self._sampled.get(member.record_id)
                if previous is None or previous[0] is not rollup:
                    previous = self._sampled[member.record_id] = (rollup, ctx.t)
                values.update(
                    uss=rollup.uss, pss=rollup.pss, rss=rollup.rss, swap=rollup.swap,
                    sampled=previous[1],
                )
            values.update(extra.get(member.record_id, {}))
            slot = self._slots.slot(member.key, member.role)
            points.append(ProcessPoint(member.role, slot, command, values))
            for key in _SUMMED:
                if key in values:
                    tree[key] = tree.get(key, 0.0) + values[key]
        self._peak_pss = max(self._peak_pss, tree.get("pss", 0.0))
        tree["peak_pss"] = self._peak_pss
        tree["processes"] = len(live)
        tree["workers"] = sum(1 for m in live if m.role == "worker")
        self.box.publish(Snapshot(ctx.t, tuple(points), tree, self.ticks, self.mode))
