"""The checkpoint zoo, built once per test session (each entry on first use)."""

from __future__ import annotations

import pytest
from zoo_builder import Zoo


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("zoo"))
