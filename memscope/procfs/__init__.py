"""The /proc layer: pure parsers (bytes to records) and a reader with a configurable root."""

from memscope.procfs._errors import MalformedProcFile
from memscope.procfs._parsers import (
    MapEntry,
    Mapping,
    Rollup,
    Stat,
    Statm,
    Status,
    parse_maps,
    parse_smaps,
    parse_smaps_rollup,
    parse_stat,
    parse_statm,
    parse_status,
    sum_rollups,
)
from memscope.procfs._reader import (
    AccessDenied,
    ProcessGone,
    ProcessHandle,
    ProcFile,
    ProcFS,
    ProcfsError,
    boundary,
)

__all__ = [
    "AccessDenied",
    "MalformedProcFile",
    "MapEntry",
    "Mapping",
    "ProcFS",
    "ProcFile",
    "ProcessGone",
    "ProcessHandle",
    "ProcfsError",
    "Rollup",
    "Stat",
    "Statm",
    "Status",
    "boundary",
    "parse_maps",
    "parse_smaps",
    "parse_smaps_rollup",
    "parse_stat",
    "parse_statm",
    "parse_status",
    "sum_rollups",
]
