"""What trains in each stage, and a table that shows it.

align: projector only. instruct: LoRA/QLoRA adapters + projector, or (full) LLM + projector. prefer: the adapters
only (the adapter-free network is the reference, so the projector stays as it was), or (full) LLM + projector.
The vision tower stays frozen unless `train_vision` asks for it whole (full) or for its own LoRA (lora).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STAGES = ("align", "instruct", "prefer", "rl")
METHODS = ("lora", "qlora", "full")

# Component of each parameter, read from its name inside LlavaForConditionalGeneration (PEFT-wrapped or not).
_COMPONENTS = (
    ("vision_tower", "vision"),  # its LoRA weights are "vision_lora" (component_of checks them first)
    ("multi_modal_projector", "projector"),
    ("image_newline", "projector"),  # AnyRes row separator: LLaVA-NeXT trains it with the projector
    ("lora_", "lora"),
    ("language_model", "llm"),
    ("lm_head", "llm"),
)


# Which learning rate group each component belongs to (optim.vision_lr / projector_lr / llm_lr).
LR_GROUPS = {"vision": "vision", "vision_lora": "vision", "projector": "projector", "lora": "llm", "llm": "llm",
             "other": "llm"}


def component_of(param_name: str) -> str:
    if "vision_tower" in param_name and "lora_" in param_name:
        return "vision_lora"
    for marker, component in _COMPONENTS:
        if marker in param_name:
            return component
    return "other"


def vision_mode(train_vision: bool | str) -> str:
    """frozen / full / lora from the config value (booleans: frozen / full)."""
    if isinstance(train_vision, bool):
        return "full" if train_vision else "frozen"
    if train_vision not in ("frozen", "full", "lora"):
        raise ValueError(f"train_vision must be frozen, full or lora, got {train_vision!r}")
    return train_vision


def apply_stage_policy(model: torch.nn.Module, stage: str, method: str = "lora",
                       train_vision: bool | str = "frozen") -> None:
    """Sets requires_grad for `stage` / `method`. LoRA adapters (the tower's too) must already be attached."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    lora = method in ("lora", "qlora")
    trainable = set() if stage in ("prefer", "rl") and lora else {"projector"}
    mode = vision_mode(train_vision)
    if mode != "frozen":
        trainable.add("vision" if mode == "full" else "vision_lora")
    if stage != "align":
        trainable.add("lora" if lora else "llm")
    for name, param in model.named_parameters():
        param.requires_grad = component_of(name) in trainable and param.is_floating_point()


@dataclass
class ParamCount:
    trainable: int = 0
    frozen: int = 0


def count_parameters(model: torch.nn.Module) -> dict[str, ParamCount]:
    """Trainable / frozen parameter counts per component (4-bit weights counted as their real elements)."""
    counts: dict[str, ParamCount] = {}
    for name, param in model.named_parameters():
        n = param.numel()
        if hasattr(param, "quant_state") or param.dtype == torch.uint8:  # bitsandbytes packs 2 weights a byte
            n *= 2
        if hasattr(param, "ds_numel"):  # DeepSpeed ZeRO-3 partitions: count the full tensor
            n = param.ds_numel
        entry = counts.setdefault(component_of(name), ParamCount())
        if param.requires_grad:
            entry.trainable += n
        else:
            entry.frozen += n
    return counts


def format_parameter_table(counts: dict[str, ParamCount]) -> str:
    rows = [("component", "trainable", "frozen", "% trainable")]
    total = ParamCount()
    for name in ("vision", "vision_lora", "projector", "llm", "lora", "other"):
        if name not in counts:
            continue
        c = counts[name]
        total.trainable += c.trainable
        total.frozen += c.frozen
        rows.append((name, f"{c.trainable:,}", f"{c.frozen:,}", _pct(c)))
    rows.append(("total", f"{total.trainable:,}", f"{total.frozen:,}", _pct(total)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _pct(c: ParamCount) -> str:
    total = c.trainable + c.frozen
    return f"{100 * c.trainable / total:.2f}" if total else "0.00"
