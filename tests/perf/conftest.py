"""Perf-room fixtures: the synthetic shapes set (with long multi-turn records) and one-thread torch."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mixed_data(tmp_path_factory):
    """(records file, image root): synthetic instruct records plus long multi-turn and text-only ones."""
    from vistune.bench.workload import write_mixed_records

    root = tmp_path_factory.mktemp("mixed")
    return write_mixed_records(root, n=12, long_records=4, seed=0), root
