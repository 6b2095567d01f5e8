"""Every feature of a recording, in order, wired here and nowhere else.

A feature has up to four parts:

    tables      DDL of its recording tables (created in every recording, used or not)
    store       the module holding the only SQL for those tables (typed rows in and out)
    hook        start(session) / tick(ctx) / close(writer); close persists everything the
                feature finished or has in flight, before the writer closes
    summarize   summarize(recording, summary): sets the feature's typed section of the
                Summary, which every reporter and `check` read

    feature   tables (store)                       hook                   summary section
    sampler   meta, processes, samples, ticks      (the loop itself)      Summary core
              (memscope.recording)
    notes     notes (memscope.notes)               -                      Summary.notes
    cow       cow_scans, cow_details,              cow.schedule.          Summary.cow
              cow_estimates                        CowScheduler
              (memscope.cow.store)
    steady    -                                    -                      extra["steady"],
                                                                          p.extra["cow_stale"]
    libraries process_libraries (memscope.libraries) libraries.LibraryWatch -
    frameworks -                                   -                      p.extra["framework"],
                                                                          p.extra["libraries"],
                                                                          pandas advice
    sites     cow_sites (memscope.leaks.store)     leaks.hook.LeakHook    Summary.sites
    leaks     leak_snapshots (memscope.leaks.store) (same job thread)     Summary.leaks
    metrics   -                                    metrics.feed.MetricsFeed  -
    live      -                                    live.LiveView          -

Nothing registers itself by being imported: `RecordingWriter` creates `recording_tables()`,
`build_summary` calls `summarize()`, and `run`/`attach`/the pytest plugin get their hooks from
`build_hooks(options)`. Options arrive as a `FeatureOptions` value, never through the click
context. Imports are done inside the functions so that importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from memscope.analysis.summary import Summary
    from memscope.recording import Recording
    from memscope.sampler import Hook

__all__ = [
    "FEATURES",
    "Feature",
    "FeatureOptions",
    "build_hooks",
    "recording_tables",
    "summarize",
]


@dataclass(frozen=True)
class FeatureOptions:
    """What the user asked for; `run`, `attach`, the pytest plugin and tests build one."""

    cow_interval: float | None = None  # None: adaptive; 0: no scheduled scans; S: every S s
    run_dir: str | None = None  # agent run directory (--trace-sites), for COW sites
    trace_workers: bool = False  # agents keep tracing in workers (growing lines)
    leak_census: bool = False  # out-of-process type census of leaking processes
    hold_exit: bool = False  # tracing origins wait at exit for their sites (run only)
    metrics: object | None = None  # a metrics.feed.MetricsFeed (--serve-metrics)
    live: object | None = None  # a live.LiveView (--live)


@dataclass(frozen=True)
class Feature:
    name: str
    tables: Callable[[], Sequence[str]]
    hook: Callable[[FeatureOptions], Hook | None]
    summarize: Callable[[Recording, Summary], None] | None


def _no_tables() -> Sequence[str]:
    return ()


def _no_hook(_options: FeatureOptions) -> Hook | None:
    return None


def _notes_tables() -> Sequence[str]:
    from memscope.notes import NOTES_DDL

    return NOTES_DDL


def _notes_summary(rec: Recording, summary: Summary) -> None:
    from memscope.notes import group_notes, read_notes

    summary.notes = group_notes(read_notes(rec.conn))


def _cow_tables() -> Sequence[str]:
    from memscope.cow.store import COW_DDL

    return COW_DDL


def _cow_hook(options: FeatureOptions) -> Hook | None:
    from memscope.cow.schedule import CowScheduler
    from memscope.cow.sites import PAGE_BUDGET

    # with COW sites (--trace-sites), a sample of each worker's copied pages from its
    # latest quick scan: the sites capture's fallback when the worker exits first
    keep = PAGE_BUDGET if options.run_dir else 0
    return CowScheduler(interval=options.cow_interval, keep_pages=keep)


def _cow_summary(rec: Recording, summary: Summary) -> None:
    from memscope.analysis.cow_summary import summarize_cow

    summarize_cow(rec, summary)


def _steady_summary(rec: Recording, summary: Summary) -> None:
    """The shutdown window and steady figures, then which COW scans it left stale."""
    from memscope.analysis.staleness import add_cow_staleness
    from memscope.analysis.steady import add_steady

    add_steady(rec, summary)
    add_cow_staleness(rec, summary)


def _libraries_tables() -> Sequence[str]:
    from memscope.libraries import LIBRARIES_DDL

    return LIBRARIES_DDL


def _libraries_hook(_options: FeatureOptions) -> Hook | None:
    from memscope.libraries import LibraryWatch

    return LibraryWatch()


def _frameworks_summary(rec: Recording, summary: Summary) -> None:
    from memscope.analysis.framework_summary import add_frameworks

    add_frameworks(rec, summary)


def _sites_tables() -> Sequence[str]:
    from memscope.leaks.store import SITES_DDL

    return SITES_DDL


def _sites_summary(rec: Recording, summary: Summary) -> None:
    from memscope.leaks.summary import summarize_sites

    summarize_sites(rec, summary)


def _leak_tables() -> Sequence[str]:
    from memscope.leaks.store import LEAK_DDL

    return LEAK_DDL


def _leak_hook(options: FeatureOptions) -> Hook | None:
    """One job thread serves sites (COW sites of workers) and leaks (snapshots)."""
    if options.run_dir is None and not options.leak_census:
        return None
    from memscope.leaks.hook import LeakConfig, LeakHook

    return LeakHook(LeakConfig(run_dir=options.run_dir, census=options.leak_census,
                               site_growth=options.trace_workers,
                               hold_exit=options.hold_exit))


def _leak_summary(rec: Recording, summary: Summary) -> None:
    from memscope.leaks.summary import summarize_leaks

    summarize_leaks(rec, summary)


def _given(attr: str) -> Callable[[FeatureOptions], Hook | None]:
    def hook(options: FeatureOptions) -> Hook | None:
        value = getattr(options, attr)
        return value  # type: ignore[no-any-return]

    return hook


#: The features, in the order their hooks tick and their summary sections are computed.
FEATURES: tuple[Feature, ...] = (
    Feature("notes", _notes_tables, _no_hook, _notes_summary),
    Feature("cow", _cow_tables, _cow_hook, _cow_summary),
    Feature("steady", _no_tables, _no_hook, _steady_summary),  # after cow: marks stale scans
    Feature("libraries", _libraries_tables, _libraries_hook, None),  # summed by frameworks
    Feature("frameworks", _no_tables, _no_hook, _frameworks_summary),  # reads cow's advice
    Feature("sites", _sites_tables, _no_hook, _sites_summary),  # hook: see "leaks"
    Feature("leaks", _leak_tables, _leak_hook, _leak_summary),
    Feature("metrics", _no_tables, _given("metrics"), None),  # after cow: reads its scans
    Feature("live", _no_tables, _given("live"), None),  # last: shows what the others found
)


def recording_tables() -> list[str]:
    """DDL of every feature's tables (every recording has all of them)."""
    return [ddl for feature in FEATURES for ddl in feature.tables()]


def build_hooks(options: FeatureOptions) -> list[Hook]:
    """The hooks of a recording session, in FEATURES order."""
    return [h for feature in FEATURES if (h := feature.hook(options)) is not None]


def summarize(rec: Recording, summary: Summary) -> None:
    """Every feature's summary section, in FEATURES order."""
    for feature in FEATURES:
        if feature.summarize is not None:
            feature.summarize(rec, summary)
