"""What a run (or a checkpoint) leaves behind for inference: the trained weights and how to rebuild their base.

Layout: `projector.safetensors`; `adapter/` (PEFT, LoRA weights only) for lora / qlora, or the full LLaVA weights
(standard HF layout) for full; the processor files; `base.json` naming the exact base parts; `config.yaml`.
Under ZeRO-3 the trained parameters are gathered from their partitions first (collective: every rank calls this).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from vistune.model.checkpoints.projector import save_projector, save_vision_tower
from vistune.model.compose import llava_of, num_image_tokens

log = logging.getLogger(__name__)

BASE_FILE = "base.json"
ADAPTER_DIR = "adapter"
CONFIG_FILE = "config.yaml"
_PROJ = "multi_modal_projector."
_NEWLINE = "image_newline"
_TOWER = "vision_tower."


def gather_parameters(model: torch.nn.Module, keep: Callable[[str], bool], to_this_rank: bool = True,
                      chunk_bytes: int = 1 << 28) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters whose names pass `keep`, whole even under ZeRO-3 partitioning.

    Collective under ZeRO-3: every rank must call it with the same `keep`. Ranks with `to_this_rank` False
    take part in the gathers without holding copies.
    """
    selected = [(n, p) for n, p in model.named_parameters() if keep(n)]
    if not any(hasattr(p, "ds_id") for _, p in selected):
        return {n: p.detach().cpu().clone() for n, p in selected} if to_this_rank else {}
    import deepspeed

    out: dict[str, torch.Tensor] = {}
    chunk: list[tuple[str, torch.nn.Parameter]] = []
    size = 0
    for item in selected + [None]:
        if item is not None:
            chunk.append(item)
            size += getattr(item[1], "ds_numel", item[1].numel()) * item[1].element_size()
        if chunk and (item is None or size >= chunk_bytes):
            with deepspeed.zero.GatheredParameters([p for _, p in chunk], modifier_rank=None):
                if to_this_rank:
                    out.update({n: p.detach().cpu().clone() for n, p in chunk})
            chunk, size = [], 0
    return out


def part_fingerprint(source: str) -> str | None:
    """sha256 of a local part's config.json (or .gguf header), so base.json pins the exact files used."""
    path = Path(source)
    target = path / "config.json" if path.is_dir() else path if path.is_file() else None
    if target is None or not target.is_file():
        return None
    with open(target, "rb") as f:
        return hashlib.sha256(f.read(1 << 20)).hexdigest()


def base_record(config, model) -> dict:
    """The exact base parts and settings `vistune.model.load_trained` needs to rebuild the trained model."""
    from vistune.data_prep import get_template
    from vistune.model.presets import resolve_llm, resolve_vision

    qlora = config.stage != "align" and config.method == "qlora"
    weights = "projector" if config.stage == "align" else "full" if config.method == "full" else "adapter"
    start = config.start
    if config.model.base and not start:  # the base rebuilds the model; its adapter (continued) is replaced by the run's own
        lora = config.stage == "instruct" and config.method in ("lora", "qlora")
        return {
            "base": config.model.base,
            "base_sha256": part_fingerprint(config.model.base),
            "base_adapter": config.model.base_adapter if lora else "merge",
            "base_vision": config.model.base_vision,
            "allow_pickle": config.model.allow_pickle,
            "dtype": config.model.dtype,
            "load_in_4bit": qlora,
            "template": config.template,
            "chat_template": get_template(config.template).jinja,
            "stage": config.stage,
            "method": config.method,
            "weights": weights,
            "image_seq_length": int(llava_of(model).config.image_seq_length),
        }
    vision_path, llm_path = resolve_vision(config.vision), resolve_llm(config.llm)
    return {
        "start": str(Path(start).resolve()) if start else None,  # prefer: the trained model it started from
        "vision": config.vision,
        "vision_path": vision_path,
        "vision_sha256": part_fingerprint(vision_path),
        "llm": config.llm,
        "llm_path": llm_path,
        "llm_sha256": part_fingerprint(llm_path),
        "dtype": config.model.dtype,
        "load_in_4bit": qlora,
        "allow_pickle": config.model.allow_pickle,  # the parts were trusted with pickle weights when trained
        "vision_feature_layer": config.model.vision_feature_layer,
        "template": config.template,
        "chat_template": get_template(config.template).jinja,  # so the model room rebuilds the processor as trained
        "stage": config.stage,
        "method": config.method,
        "weights": weights,
        "train_vision": config.model.train_vision,
        "image_seq_length": num_image_tokens(llava_of(model)),
        **arch_record(llava_of(model)),
    }


def arch_record(llava) -> dict:
    """The AnyRes settings load_trained needs to rebuild the same arch (empty for LLaVA-1.5)."""
    config = llava.config
    if config.model_type == "llava":
        return {}
    return {"arch": config.model_type, "image_grid_pinpoints": config.image_grid_pinpoints,
            "vision_aspect_ratio": getattr(config, "vision_aspect_ratio", "anyres_max_9")}


def save_artifacts(model, out_dir: str | Path, *, processor, base: dict, config_yaml: str, is_main: bool) -> None:
    """Writes the inference artifacts of `model` into `out_dir`. Collective under ZeRO-3."""
    out = Path(out_dir)
    weights = base["weights"]
    if weights == "full":
        state = gather_parameters(model, lambda n: True, to_this_rank=is_main)
    else:  # trained parameters only: the projector (+ LoRA)
        tower = base.get("train_vision") == "full"  # a fully trained tower is saved beside the projector
        state = gather_parameters(model, lambda n: _PROJ in n or "lora_" in n or n.endswith(_NEWLINE)
                                  or (tower and _TOWER in n and "lora_" not in n), to_this_rank=is_main)
    if not is_main:
        return
    empty = [k for k, v in state.items() if v.numel() == 0]
    if empty:
        raise RuntimeError(f"refusing to save empty tensors {empty[:5]} (ZeRO-3 partitions were not gathered)")
    out.mkdir(parents=True, exist_ok=True)
    projector = {n[n.index(_PROJ):]: v for n, v in state.items() if _PROJ in n}
    newline = [v for n, v in state.items() if n.endswith(_NEWLINE)]  # AnyRes row separator
    if newline:
        projector[_NEWLINE] = newline[0]
    save_projector(projector, out)
    tower_state = {n[n.index(_TOWER) + len(_TOWER):]: v for n, v in state.items() if _TOWER in n and "lora_" not in n}
    if weights != "full" and tower_state:
        save_vision_tower(tower_state, out)
    if weights == "adapter":
        save_adapter(model, out / ADAPTER_DIR, {n: v for n, v in state.items() if "lora_" in n})
    elif weights == "full":
        llava = llava_of(model)
        persistent = set(llava.state_dict())  # non-persistent buffers (rotary caches) are not weights
        buffers = {n: b.detach().cpu() for n, b in llava.named_buffers() if n in persistent and n not in state}
        prefix = _strip_prefix(state, llava)
        llava.save_pretrained(out, state_dict={**{k[len(prefix):]: v for k, v in state.items()}, **buffers})
    processor.save_pretrained(out)
    (out / BASE_FILE).write_text(json.dumps(base, indent=2) + "\n")
    (out / CONFIG_FILE).write_text(config_yaml)


def _strip_prefix(state: dict, llava) -> str:
    """The name prefix that wrappers put before the Llava model's own parameter names."""
    own = next(iter(dict(llava.named_parameters())))
    name = next((k for k in state if k.endswith(own)), own)
    return name[: len(name) - len(own)]


def save_adapter(model, adapter_dir: Path, lora_state: dict[str, torch.Tensor]) -> None:
    """A PEFT adapter directory with the LoRA weights only (no modules_to_save: vLLM refuses those)."""
    from peft import PeftModel

    peft_model = model
    while not isinstance(peft_model, PeftModel):
        peft_model = getattr(peft_model, "module", None)
        if peft_model is None:
            raise TypeError("method lora / qlora but the model holds no PEFT adapter")
    if not lora_state:
        raise RuntimeError("no LoRA weights to save")
    peft_model.save_pretrained(str(adapter_dir), state_dict=lora_state, save_embedding_layers=False)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("modules_to_save"):
        raise RuntimeError(f"adapter carries modules_to_save {cfg['modules_to_save']}: vLLM would refuse it")
