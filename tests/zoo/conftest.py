"""The checkpoint zoo, built once per test session (each entry on first use)."""

from __future__ import annotations

import json

import pytest
from zoo_builder import Zoo


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """Synthetic shapes data; `small.json` holds 8 instruct records with images, `align.json` 8 captions."""
    from vistune.data_prep import synthesize

    root = tmp_path_factory.mktemp("shapes-zoo")
    paths = synthesize(root, n=16, seed=0)
    records = [r for r in json.loads(paths["instruct"].read_text()) if "image" in r][:8]
    (root / "small.json").write_text(json.dumps(records))
    (root / "align.json").write_text(json.dumps(json.loads(paths["align"].read_text())[:8]))
    return root
