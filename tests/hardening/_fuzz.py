"""Shared settings of the property-based tests: bounded in the suite, large in `make fuzz`.

MEMSCOPE_FUZZ_EXAMPLES sets the number of examples per property (suite default: 60);
MEMSCOPE_FUZZ_REPORT names a JSON file that receives the outcome counts (docs/errors.md).
"""

from __future__ import annotations

import json
import os
from collections import Counter

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("MEMSCOPE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the repository
    derandomize=EXAMPLES <= 100,  # the suite runs the same examples every time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)


def save_counts(name: str, counts: Counter[str]) -> None:
    path = os.environ.get("MEMSCOPE_FUZZ_REPORT")
    if not path:
        return
    data = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    data[name] = dict(sorted(counts.items()))
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
