"""Reliability fixtures: the bad-input zoo, a small clean dataset, tiny-recipe overrides and subprocess helpers.

Everything trains the tiny preset (fp32, one thread, a few steps) so the whole room runs in a few minutes on CPU.
"""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def zoo(tmp_path_factory, tiny_parts):
    """Good synthetic records + one record per bad-input kind (see zoo.py), with a valid image outside the root."""
    from zoo import build_zoo

    from vistune.data_prep import synthesize

    directory = tmp_path_factory.mktemp("zoo")
    paths = synthesize(directory / "data", n=8, seed=0, n_heldout=0)
    good = [r for r in json.loads(paths["instruct"].read_text()) if "image" in r][:8]
    return build_zoo(directory, good)


@pytest.fixture(scope="session")
def clean(tmp_path_factory, tiny_parts):
    """A small clean instruct set: (records file, image root)."""
    from vistune.data_prep import synthesize

    root = tmp_path_factory.mktemp("clean")
    paths = synthesize(root, n=12, seed=1, n_heldout=0)
    records = json.loads(paths["instruct"].read_text())[:8]
    (root / "small.json").write_text(json.dumps(records))
    return root / "small.json", root
