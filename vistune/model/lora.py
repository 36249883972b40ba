"""LoRA / QLoRA through PEFT, on the language model and, when asked, the vision tower's encoder layers.

Targets are resolved inside `model.language_model` (never the projector or lm_head); a vision LoRA (its own rank
and targets, PEFT's rank_pattern) joins the same adapter. The projector trains as full weights and is saved beside
the adapter, not inside it: vLLM refuses adapters that carry `modules_to_save`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

_LLM_PREFIX = "model.language_model."
_VISION_LAYERS = re.compile(r"model\.vision_tower\..*encoder\.layers\.\d+\.")


@dataclass
class LoraSettings:
    r: int = 128  # LLaVA-1.5 LoRA recipe
    alpha: int = 256
    dropout: float = 0.05
    target_modules: list[str] | None = None  # leaf names (e.g. q_proj); None = every linear layer of the LLM
    extra: dict = field(default_factory=dict)  # passed to peft.LoraConfig as is (e.g. use_rslora)


def _is_linear(module: torch.nn.Module) -> bool:
    if isinstance(module, torch.nn.Linear):
        return True
    try:
        import bitsandbytes as bnb

        return isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))
    except ImportError:
        return False


def llm_linear_names(model: torch.nn.Module) -> list[str]:
    """Leaf names of the linear layers inside the language model (q_proj, ..., down_proj)."""
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if name.startswith(_LLM_PREFIX) and _is_linear(module)
    }
    if not names:
        raise ValueError("found no linear layer under model.language_model: is this a LLaVA model?")
    return sorted(names)


def lora_target_regex(model: torch.nn.Module, target_modules: list[str] | None = None) -> str:
    """A PEFT target regex that matches the chosen leaf names inside the language model only."""
    chosen = _chosen_targets(llm_linear_names(model), target_modules, "LoRA target modules", "the LLM")
    return rf"{re.escape(_LLM_PREFIX)}.*\.({'|'.join(map(re.escape, chosen))})"


def _chosen_targets(available: list[str], target_modules: list[str] | None, what: str, where: str) -> list[str]:
    """`target_modules` (default: every available leaf name), refusing names that are not linear layers there."""
    chosen = target_modules or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"{what} {unknown} are not linear layers of {where} (have {available})")
    return chosen


def vision_linear_names(model: torch.nn.Module) -> list[str]:
    """Leaf names of the linear layers in the vision tower's encoder layers (q_proj, ..., fc1, fc2)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if _VISION_LAYERS.match(name) and _is_linear(module)}
    if not names:
        raise ValueError("found no linear layer in the vision tower's encoder layers")
    return sorted(names)


def vision_target_regex(model: torch.nn.Module, target_modules: list[str] | None = None) -> str:
    """A PEFT target regex matching the chosen leaf names inside the vision tower's encoder layers only."""
    chosen = _chosen_targets(vision_linear_names(model), target_modules, "vision LoRA target modules", "the tower")
    return rf"{_VISION_LAYERS.pattern}.*({'|'.join(map(re.escape, chosen))})"


def attach_lora(model, settings: LoraSettings | None = None, gradient_checkpointing: bool = False,
                vision: LoraSettings | None = None):
    """Wraps a composed Llava model in a PeftModel; for a 4-bit LLM, prepares it for k-bit training first.
    `vision` adds a LoRA of its own rank / alpha / targets on the tower to the same adapter."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return get_peft_model(model, lora_config(model, settings, vision))


def lora_config(model, settings: LoraSettings | None = None, vision: LoraSettings | None = None):
    """The peft.LoraConfig vistune attaches: `settings` on the LLM's linear layers; `vision` adds the tower's own."""
    from peft import LoraConfig

    settings = settings or LoraSettings()
    targets, patterns = lora_target_regex(model, settings.target_modules), {}
    if vision is not None:
        vision_regex = vision_target_regex(model, vision.target_modules)
        targets = f"({targets})|({vision_regex})"
        patterns = {"rank_pattern": {vision_regex: vision.r}, "alpha_pattern": {vision_regex: vision.alpha}}
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
        **patterns,
        **settings.extra,
    )
