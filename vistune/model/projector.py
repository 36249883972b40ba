"""The projector as its own artifact: stage 1's whole output and stage 2's second output.

Saved under its `multi_modal_projector.` keys so the file maps onto any composed model of the same sizes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vistune.model.compose import llava_of

PROJECTOR_FILE = "projector.safetensors"
_PREFIX = "multi_modal_projector."


def projector_module(model) -> torch.nn.Module:
    return llava_of(model).model.multi_modal_projector


def projector_state_dict(model) -> dict[str, torch.Tensor]:
    return {_PREFIX + k: v.detach().contiguous().cpu() for k, v in projector_module(model).state_dict().items()}


def save_projector(model_or_state, path: str | Path) -> Path:
    state = model_or_state if isinstance(model_or_state, dict) else projector_state_dict(model_or_state)
    empty = [k for k, v in state.items() if v.numel() == 0]
    if empty:
        raise RuntimeError(f"refusing to save empty projector tensors {empty} (ZeRO-3 weights not gathered?)")
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / PROJECTOR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt", "producer": "vistune"})
    return path


def load_projector(model, path: str | Path) -> None:
    """Loads a saved projector into a composed model; shapes must match exactly."""
    path = Path(path)
    if path.is_dir():
        path = path / PROJECTOR_FILE
    if not path.exists():
        raise FileNotFoundError(f"no projector at {path}")
    state = {k.removeprefix(_PREFIX): v for k, v in load_file(str(path)).items()}
    module = projector_module(model)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        raise ValueError(f"{path}: projector shapes {got} do not match the model's {expected}")
    ref = next(module.parameters())
    module.load_state_dict({k: v.to(device=ref.device, dtype=ref.dtype) for k, v in state.items()})
