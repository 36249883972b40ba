"""The projector as its own artifact: stage 1's whole output and stage 2's second output.

Saved under its `multi_modal_projector.` keys so the file maps onto any composed model of the same sizes. AnyRes
models (LLaVA-NeXT / OneVision) add their learned `image_newline`, which trains with the projector.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vistune.model.compose import llava_of

PROJECTOR_FILE = "projector.safetensors"
_PREFIX = "multi_modal_projector."
NEWLINE_KEY = "image_newline"


def projector_module(model) -> torch.nn.Module:
    return llava_of(model).model.multi_modal_projector


def image_newline(model) -> torch.nn.Parameter | None:
    """The AnyRes row separator, or None for LLaVA-1.5."""
    return getattr(llava_of(model).model, NEWLINE_KEY, None)


def projector_state_dict(model) -> dict[str, torch.Tensor]:
    state = {_PREFIX + k: v.detach().contiguous().cpu() for k, v in projector_module(model).state_dict().items()}
    newline = image_newline(model)
    if newline is not None:
        state[NEWLINE_KEY] = newline.detach().contiguous().cpu()
    return state


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
    newline_state = state.pop(NEWLINE_KEY, None)
    newline = image_newline(model)
    if newline is not None and newline_state is not None:
        if tuple(newline_state.shape) != tuple(newline.shape):
            raise ValueError(f"{path}: image_newline shape {tuple(newline_state.shape)} does not match the model's "
                             f"{tuple(newline.shape)}")
        with torch.no_grad():
            newline.copy_(newline_state.to(device=newline.device, dtype=newline.dtype))
    module = projector_module(model)
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        raise ValueError(f"{path}: projector shapes {got} do not match the model's {expected}")
    ref = next(module.parameters())
    module.load_state_dict({k: v.to(device=ref.device, dtype=ref.dtype) for k, v in state.items()})


VISION_TOWER_FILE = "vision_tower.safetensors"


def save_vision_tower(state: dict[str, torch.Tensor], directory: str | Path) -> Path:
    """A fully trained vision tower (model.train_vision: full), keyed as the tower's own state dict."""
    path = Path(directory) / VISION_TOWER_FILE
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt", "producer": "vistune"})
    return path


def load_vision_tower_weights(model, path: str | Path) -> None:
    """Loads a saved trained tower into a composed model; every tower weight must be present."""
    tower = llava_of(model).model.vision_tower
    state = load_file(str(path))
    ref = next(tower.parameters())
    missing, unexpected = tower.load_state_dict({k: v.to(device=ref.device, dtype=ref.dtype) for k, v in state.items()},
                                                strict=False)
    missing = [k for k in missing if "lora_" not in k]
    if missing or unexpected:
        raise ValueError(f"{path}: vision tower weights do not match the model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
