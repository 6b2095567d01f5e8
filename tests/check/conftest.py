"""Fixture workloads recorded once per session (real forks); many rule checks run on them."""

from __future__ import annotations

import pytest

from tests.check.helpers import LEAKY, PRELOAD, Recorded, record


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Recorded]:
    """Each workload recorded once for the whole session; many rule checks run against it."""
    d = tmp_path_factory.mktemp("recordings")
    return {
        "regression": record(d / "regression.memscope", "preload_list.py", *PRELOAD),
        "twin": record(d / "twin.memscope", "preload_list.py", *PRELOAD, "--no-touch"),
        "leaky": record(d / "leaky.memscope", "leaky_worker.py", *LEAKY),
    }
