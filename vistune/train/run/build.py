"""Turns a RunConfig into the objects a run trains: the model (with its stage policy) and the dataset.

Everything here goes through the other rooms' public names (`vistune.model`, `vistune.data_prep`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from vistune.train.run.config import ConfigError, RunConfig
from vistune.train.run.resolve import Decision, resolve_checkpointing, resolve_liger, resolve_packing

log = logging.getLogger(__name__)


def uses_4bit(config: RunConfig) -> bool:
    return config.stage != "align" and config.method == "qlora"


def uses_lora(config: RunConfig) -> bool:
    return config.stage != "align" and config.method in ("lora", "qlora")


def projector_file(path: str) -> Path:
    """A projector.safetensors, or a run / checkpoint directory that holds one."""
    from vistune.model import PROJECTOR_FILE

    p = Path(path)
    p = p / PROJECTOR_FILE if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"model.projector: no projector at {p} (run stage align first, or fix the path)")
    return p


def chat_template_of(template: str) -> str | None:
    """The Jinja chat template equivalent to a conversation template (None: keep the tokenizer's own)."""
    from vistune.data_prep import get_template

    return get_template(template).jinja


@dataclass
class BuiltRun:
    """What a run trains, built from its config, and what the config's auto switches became."""

    model: object
    processor: object
    dataset: object
    collator: object
    decisions: list[Decision] = field(default_factory=list)


def build_run(config: RunConfig, skips) -> BuiltRun:
    """Model, dataset and collator, resolving the auto switches on the way (packing before the model is built,
    checkpointing and Liger once the model and data are known); `config` is updated in place."""
    first = resolve_packing(config)
    model, processor = build_model(config)
    dataset, collator = build_dataset(config, processor, model, skips)
    decisions = [first, resolve_checkpointing(config, model, dataset), resolve_liger(config, model)]
    if config.optim.cross_entropy == "liger" and config.optim.liger is not True:
        raise ConfigError("optim.cross_entropy=liger needs Liger's kernels (optim.liger=true, CUDA and "
                          "pip install vistune[liger]); use optim.cross_entropy=chunked")
    return BuiltRun(model, processor, dataset, collator, [d for d in decisions if d is not None])


def build_model(config: RunConfig):
    """(model, processor): the composed LLaVA with projector init, LoRA / QLoRA attached and the stage policy set."""
    from vistune.model import apply_stage_policy, attach_lora

    model, processor, base_adapter = compose_model(config)
    if uses_lora(config) and base_adapter is not None:
        from vistune.model.checkpoints.base import continue_adapter

        model = continue_adapter(model, base_adapter, config.optim.gradient_checkpointing is True)
        log.info("continuing the base's adapter %s", base_adapter)
    elif uses_lora(config):
        model = attach_lora(model, lora_settings(config), gradient_checkpointing=config.optim.gradient_checkpointing is True,
                            vision=vision_lora_settings(config))
    apply_stage_policy(model, config.stage, config.method, train_vision=config.model.train_vision)
    if config.optim.vision_gradient_checkpointing and config.trains_vision:
        from vistune.model.compose import llava_of

        llava_of(model).model.vision_tower.gradient_checkpointing_enable({"use_reentrant": False})
    return model, processor


def lora_settings(config: RunConfig):
    from vistune.model import LoraSettings

    return LoraSettings(r=config.lora.r, alpha=config.lora.alpha, dropout=config.lora.dropout,
                        target_modules=config.lora.target_modules)


def compose_model(config: RunConfig):
    """(model, processor, the adapter dir of a base+lora model.base to continue, or None): the LLaVA from
    model.base or composed from its parts (vision, LLM, projector), nothing attached yet."""
    from vistune.model import build_llava, load_projector

    resolve_packing(config)
    base_adapter = None
    if config.model.base:
        model, processor, base_adapter = load_base_model(config)
    else:
        model, processor = build_llava(
            config.vision,
            config.llm,
            dtype=config.model.dtype,
            load_in_4bit=uses_4bit(config),
            vision_feature_layer=config.model.vision_feature_layer,
            chat_template=chat_template_of(config.template),
            attn_implementation=attention_implementation(config),
            allow_pickle=config.model.allow_pickle,
            **arch_settings(config),
        )
    if config.model.base:
        log.info("starting from model.base %s (its projector, processor and chat template)", config.model.base)
    elif config.model.projector:
        load_projector(model, projector_file(config.model.projector))
        log.info("projector initialised from %s", config.model.projector)
    elif config.stage != "align":
        log.warning("%s stage without model.projector: the projector starts untrained (no stage-1 alignment)",
                    config.stage)
    model.config.use_cache = False
    model.config.text_config.use_cache = False
    return model, processor, base_adapter


def continues_base_adapter(config: RunConfig) -> bool:
    """instruct with LoRA may continue a base+lora base's adapter; prefer always folds it in (it is the reference)."""
    return config.stage == "instruct" and uses_lora(config)


def vision_lora_settings(config: RunConfig):
    """The tower's own LoRA settings when model.train_vision is lora, else None."""
    if config.model.train_vision != "lora":
        return None
    from vistune.model import LoraSettings

    lora = config.lora
    return LoraSettings(r=lora.vision_r, alpha=lora.vision_alpha, dropout=lora.dropout,
                        target_modules=lora.vision_target_modules)


def arch_settings(config: RunConfig) -> dict:
    """build_llava's arch keywords; an image_grid_pinpoints the tower cannot tile is a ConfigError."""
    from vistune.model.anyres import PinpointError, check_aspect_ratio, check_pinpoints
    from vistune.model.compose import vision_input_size

    m = config.model
    if m.arch == "llava":
        return {}
    try:
        if m.image_grid_pinpoints is not None:
            check_pinpoints(m.image_grid_pinpoints, vision_input_size(config.vision))
        check_aspect_ratio(m.vision_aspect_ratio)
    except (PinpointError, ValueError) as err:
        raise ConfigError(str(err)) from err
    return {"arch": m.arch, "image_grid_pinpoints": m.image_grid_pinpoints, "vision_aspect_ratio": m.vision_aspect_ratio}


def load_base_model(config: RunConfig):
    """(model, processor, adapter dir or None) from model.base; an explicit template replaces its chat template."""
    from vistune.model.checkpoints.base import load_base

    model, processor, adapter = load_base(
        config.model.base, dtype=config.model.dtype, load_in_4bit=uses_4bit(config),
        attn_implementation=attention_implementation(config), allow_pickle=config.model.allow_pickle,
        adapter=config.model.base_adapter if continues_base_adapter(config) else "merge", vision=config.model.base_vision,
    )
    jinja = chat_template_of(config.template) if config.template != "auto" else None
    if jinja:
        processor.chat_template = processor.tokenizer.chat_template = jinja
    return model, processor, adapter


def build_dataset(config: RunConfig, processor, model, skips):
    """The tokenised training set (bad records go to `skips`) and its collator."""
    from vistune.data_prep import DataCollator, VisualInstructDataset, get_template, load_records
    from vistune.model import num_image_tokens
    from vistune.model.compose import llava_of

    image_root = config.data.image_root or str(Path(config.data.path).parent)
    settings = dict(image_root=image_root, num_image_tokens=num_image_tokens(llava_of(model)),
                    max_length=config.data.max_length, aspect=config.data.aspect, skips=skips,
                    source=config.data.path)
    loader = data_loader_kind(config)
    if loader == "stream":
        from vistune.data_prep.store.stream import StreamDataset

        settings.pop("image_root")
        dataset = StreamDataset(config.data.path, processor, get_template(config.template), seed=config.seed,
                                shuffle_buffer=config.data.shuffle_buffer, **settings)
    elif loader == "memory":
        records = load_records(config.data.path, skips=skips)
        dataset = VisualInstructDataset(records, processor, get_template(config.template), **settings)
    else:
        from vistune.data_prep.batching.cached_dataset import CachedDataset

        dataset = CachedDataset(config.data.path, processor, get_template(config.template),
                                cache_dir=config.data.cache_dir or None, **settings)
    if len(dataset) == 0:
        raise ValueError(f"{config.data.path}: no usable record ({skips.summary()})")
    resolve_packing(config)
    if config.data.packing:
        from vistune.data_prep.batching.packing import PackedCollator

        collator = PackedCollator(pad_token_id=processor.tokenizer.pad_token_id)
    else:
        collator = DataCollator(pad_token_id=processor.tokenizer.pad_token_id)
    if config.optim.cross_entropy == "chunked":
        from vistune.train.loop.losses import SupervisedLogitsCollator

        collator = SupervisedLogitsCollator(collator)
    return dataset, collator


def data_loader_kind(config: RunConfig) -> str:
    """data.loader with auto resolved: stream for a directory of .tar shards, else the tokenised cache."""
    if config.data.loader != "auto":
        return config.data.loader
    path = Path(config.data.path)
    return "stream" if path.is_dir() and any(path.glob("*.tar")) else "cache"


def attention_implementation(config: RunConfig) -> str | None:
    """model.attn_implementation, or for packed batches one that keeps samples apart (flash varlen / segments)."""
    if config.model.attn_implementation or config.data.packing is not True:
        return config.model.attn_implementation
    from vistune.model.segment_attention import packed_attention_implementation

    return packed_attention_implementation()


def loss_function(config: RunConfig):
    """The Trainer's compute_loss_func: chunked CE, or None (the model's own loss: full logits, or Liger's fused
    linear CE when optim.cross_entropy=liger and Liger's kernels are applied)."""
    if config.optim.cross_entropy == "chunked":
        from vistune.train.loop.losses import supervised_cross_entropy

        return supervised_cross_entropy
    return None


def training_callbacks(config: RunConfig) -> list:
    """Callbacks the config itself asks for (partial gradient checkpointing)."""
    if config.optim.gradient_checkpointing is True and config.optim.checkpoint_layers > 0:
        from vistune.train.loop.callbacks import PartialCheckpointing

        return [PartialCheckpointing(config.optim.checkpoint_layers)]
    return []


def length_sampler_fn(config: RunConfig, dataset):
    """A factory the trainer calls with its TrainingArguments: LLaVA's modality-length grouping, or None."""
    if not config.data.group_by_length or getattr(dataset, "shards_itself", False):
        return None  # a stream groups lengths inside its shuffle buffer
    from vistune.data_prep import LengthGroupedSampler

    def make(args):
        return LengthGroupedSampler(dataset.lengths, batch_size=args.per_device_train_batch_size,
                                    world_size=args.world_size, seed=config.seed,
                                    megabatch_mult=config.data.group_megabatches)

    return make
