"""Read a checkpoint's tensors as the hub stores them: a shard index (.safetensors or .bin) or one file.

Pickle files are read only when allowed, and then with `torch.load(weights_only=True)` (tensors, no objects).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


class WeightFileError(ValueError):
    """A weight file or shard index that is missing, unreadable or refused (pickle without permission)."""


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise WeightFileError(f"{path}: missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise WeightFileError(f"{path}: not valid JSON ({err})") from None


def load_file_checked(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightFileError(f"{path}: missing (named by the checkpoint but not on disk)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if not allow_pickle:
        raise WeightFileError(f"{path}: pickle weights; pass --allow-pickle (model.allow_pickle) if you trust them")
    try:  # weights_only: tensors and plain containers only, never arbitrary objects
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # truncated / not a torch file
        raise WeightFileError(f"{path}: cannot be read as torch weights ({type(err).__name__}: {err})") from None


def read_weights(directory: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory: a sharded index (.safetensors or .bin) or a single file."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise WeightFileError(f"{index}: no weight_map")
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(load_file_checked(directory / shard, allow_pickle))
            absent = sorted(set(weight_map) - set(state))
            if absent:
                raise WeightFileError(f"{index}: {len(absent)} tensors in the index are in no shard, e.g. {absent[0]}")
            return state
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (directory / single).is_file():
            return load_file_checked(directory / single, allow_pickle)
    raise WeightFileError(f"{directory}: no model.safetensors(.index.json) or pytorch_model.bin(.index.json)")
