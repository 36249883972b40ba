"""`--dry-run`: what a run would do, without loading (or downloading) a single weight.

The model is instantiated on the meta device from the parts' configs when those are on this machine (a local
directory, the HF cache, a GGUF file), else from vistune's table of published architectures (`vistune.perf.arch`);
for parts in neither, the parameter table is skipped with a note that says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vistune.train.run.build import uses_lora, vision_lora_settings
from vistune.train.run.config import RunConfig


class PartsNotLocal(RuntimeError):
    pass


def _local_config(source: str):
    from transformers import AutoConfig

    kwargs = {"local_files_only": True}
    if source.endswith(".gguf"):
        kwargs["gguf_file"] = Path(source).name
        source = str(Path(source).parent)
    try:
        return AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise PartsNotLocal(f"{source} is not on this machine ({type(err).__name__})") from None


def planned_model(config: RunConfig):
    """The run's model on the meta device (no weights), with LoRA attached and the stage policy applied."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from vistune.model import LoraSettings, apply_stage_policy, attach_lora
    from vistune.model.presets import resolve_llm, resolve_vision

    if config.model.base:
        return _planned_base(config)
    try:
        vision_src, llm_src = resolve_vision(config.vision), resolve_llm(config.llm)
        vcfg = _local_config(vision_src)
        tcfg = _local_config(llm_src)
        source = "the parts' configs"
    except (RuntimeError, PartsNotLocal) as err:  # not here (or a GGUF package not installed)
        vcfg, tcfg = _configs_from_table(config, err)
        source = "vistune's table of published architectures (vistune.perf.arch)"
    vcfg = getattr(vcfg, "vision_config", vcfg)
    drop_cls = vcfg.model_type.startswith("clip")
    llava_config = LlavaConfig(
        vision_config=vcfg.to_dict(),
        text_config=tcfg.to_dict(),
        image_seq_length=(vcfg.image_size // vcfg.patch_size) ** 2,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default" if drop_cls else "full",
        vision_feature_layer=config.model.vision_feature_layer,
        multimodal_projector_bias=True,
    )
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(llava_config)
    if uses_lora(config):
        settings = LoraSettings(r=config.lora.r, alpha=config.lora.alpha, dropout=config.lora.dropout,
                                target_modules=config.lora.target_modules)
        model = attach_lora(model, settings, vision=vision_lora_settings(config))
    apply_stage_policy(model, config.stage, config.method, train_vision=config.model.train_vision)
    return model, source


def _planned_base(config: RunConfig):
    """The base's own Llava config on the meta device, with this run's LoRA and stage policy."""
    from vistune.model import LoraSettings, apply_stage_policy, attach_lora
    from vistune.model.anyres import arch_of, model_class
    from vistune.model.checkpoints.base import base_llava_config

    try:
        llava_config = base_llava_config(config.model.base, config.model.base_vision, local_only=True)
    except (OSError, ValueError) as err:
        raise PartsNotLocal(f"model.base {config.model.base}: {err}") from None
    with torch.device("meta"):
        model = model_class(arch_of(llava_config))(llava_config)  # a LLaVA-NeXT / OneVision base in its own class
    if uses_lora(config):
        model = attach_lora(model, LoraSettings(r=config.lora.r, alpha=config.lora.alpha, dropout=config.lora.dropout,
                                                target_modules=config.lora.target_modules))
    apply_stage_policy(model, config.stage, config.method, train_vision=config.model.train_vision)
    return model, "the base's config"


def _configs_from_table(config: RunConfig, err: Exception):
    """Vision / LLM configs rebuilt from published architecture numbers, for parts not on this machine."""
    from transformers import CLIPVisionConfig, LlamaConfig, SiglipVisionConfig

    from vistune.perf.arch import resolve_llm_arch, resolve_vision_arch

    try:
        v, t = resolve_vision_arch(config.vision), resolve_llm_arch(config.llm)
    except ValueError:
        raise PartsNotLocal(str(err)) from None
    vision_cls = CLIPVisionConfig if v.cls_token else SiglipVisionConfig
    vcfg = vision_cls(hidden_size=v.hidden, num_hidden_layers=v.layers, intermediate_size=v.intermediate,
                      image_size=v.image_size, patch_size=v.patch_size, num_attention_heads=max(1, v.hidden // 64))
    tcfg = LlamaConfig(hidden_size=t.hidden, num_hidden_layers=t.layers, intermediate_size=t.intermediate,
                       num_attention_heads=t.heads, num_key_value_heads=t.kv_heads, vocab_size=t.vocab,
                       tie_word_embeddings=t.tied_embeddings)
    return vcfg, tcfg


def plan(config: RunConfig) -> str:
    """The text `vistune train --dry-run` prints: resolved config, checks, planned parameter table."""
    from vistune.model import count_parameters, format_parameter_table

    lines = ["resolved config:", config.to_yaml().rstrip(), ""]
    parts = f"base={config.model.base}" if config.model.base else f"vision={config.vision}  llm={config.llm}"
    lines += [f"parts: {parts}  template={config.template}"]
    lines += [f"note: {n}" for n in checks(config)]
    lines += [f"auto: {line}" for line in auto_switches(config)]
    try:
        model, source = planned_model(config)
        table = format_parameter_table(count_parameters(model))
        lines += [f"planned trainable parameters (meta device, no weights loaded; from {source}; the image / pad "
                  "tokens added at build time are not counted):", table]
    except PartsNotLocal as err:
        lines += [f"parameter table skipped: {err}; a dry run never downloads. Download the parts (or point "
                  f"model.vision / model.llm at local directories) to see it."]
    return "\n".join(lines)


def auto_switches(config: RunConfig) -> list[str]:
    """What the `auto` switches will become (packing is known now; the rest once the model and data are built)."""
    import copy

    from vistune.train.run.resolve import resolve_packing

    decision = resolve_packing(copy.deepcopy(config))
    lines = [decision.line()] if decision else []
    if config.optim.gradient_checkpointing == "auto":
        lines.append("optim.gradient_checkpointing: decided at start from the memory model and the data's longest "
                     "micro-batch (vistune plan CONFIG --gpu G shows the estimate)")
    if config.optim.liger == "auto":
        lines.append("optim.liger: on at start with CUDA and liger-kernel installed, for a Llama-family LLM")
    return lines


def checks(config: RunConfig) -> list[str]:
    """Problems a real run would hit on this machine, reported without failing the dry run."""
    notes = []
    if not Path(config.data.path).exists():
        notes.append(f"data.path {config.data.path} does not exist here")
    if config.data.image_root and not Path(config.data.image_root).is_dir():
        notes.append(f"data.image_root {config.data.image_root} does not exist here")
    if config.model.projector and not Path(config.model.projector).exists():
        notes.append(f"model.projector {config.model.projector} does not exist yet (the stage-1 output)")
    if config.deepspeed:
        ds = Path(config.deepspeed)
        if not ds.is_file():
            notes.append(f"deepspeed config {ds} does not exist")
        else:
            json.loads(ds.read_text())  # a broken DeepSpeed JSON is an error even in a dry run
    return notes
