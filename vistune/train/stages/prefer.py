"""The prefer stage: DPO-family preference tuning of a trained LLaVA, on TRL, with vistune's data and trainer.

The losses are TRL's, picked per `preference.loss` (one table, one interface):

| loss    | TRL class                              | TRL setting                                           |
|---------|----------------------------------------|-------------------------------------------------------|
| sigmoid | `trl.DPOTrainer`                       | `loss_type=["sigmoid"]` (+ `"sft"` weighted by `sft_weight`) |
| ipo     | `trl.DPOTrainer`                       | `loss_type=["ipo"]` (+ `"sft"`)                       |
| orpo    | `trl.experimental.orpo.ORPOTrainer`    | `beta` (its NLL term is built in)                     |
| simpo   | `trl.experimental.cpo.CPOTrainer`      | `loss_type="simpo"`, `simpo_gamma`, `cpo_alpha=sft_weight` |

ORPO and SimPO are reference-free; their trainers are fed vistune's image pairs by `vistune.train.stages.reference_free`.

The seam with TRL is its pre-tokenised path: vistune tokenises each pair with the stage-2 template and masking
(`vistune.data_prep.batching.preference`) and its collator hands TRL `input_ids` / `attention_mask` / `completion_mask` /
`pixel_values` (chosen rows, then rejected rows). `PreferenceTrainer` is `VistuneTrainer` (atomic checkpoints,
artifacts, supervision and non-finite guards, meter, signals) over `DPOTrainer`, whose loss it calls unchanged.
With LoRA / QLoRA the adapter is attached by TRL from vistune's `lora_config` and the reference model is the same
network with the adapter disabled (no second copy); with `full` TRL loads a frozen copy of the start model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from trl import DPOConfig, DPOTrainer

from vistune.train.loop.trainer import VistuneTrainer
from vistune.train.run.build import (
    attention_implementation,
    compose_model,
    lora_settings,
    uses_4bit,
    uses_lora,
)
from vistune.train.run.config import ConfigError, RunConfig

log = logging.getLogger(__name__)

DPO_LOSSES = {"sigmoid": "sigmoid", "ipo": "ipo"}  # preference.loss -> DPOTrainer loss_type
REFERENCE_FREE = ("orpo", "simpo")  # TRL's experimental ORPO / CPO trainers (vistune.train.stages.reference_free)


def check(config: RunConfig) -> None:
    if config.start and config.model.base:
        raise ConfigError(f"{config.stage}'s start and model.base both name the start model: give one")


def start_template(config: RunConfig) -> None:
    """data.template 'auto' -> the template the start model was trained with (its base.json), if it names one."""
    start = config.start
    if config.data.template != "auto" or not start or not (Path(start) / "base.json").is_file():
        return
    template = json.loads((Path(start) / "base.json").read_text()).get("template")
    if template and template != "auto":
        config.data.template = template


def build_model(config: RunConfig):
    """(model, processor): the start model (a trained run / checkpoint / export), or one composed from model.*.
    Nothing is attached here: TRL attaches the LoRA (so it knows the reference is the adapter-free network)."""
    from vistune.model import apply_stage_policy, load_start

    check(config)
    start_template(config)
    if config.start:  # preference.start, or rl.start (vistune.train.stages.rl builds its model here too)
        model, processor = load_start(config.start, config.model.dtype, load_in_4bit=uses_4bit(config),
                                      attn_implementation=attention_implementation(config))
        from vistune.train.run.build import chat_template_of

        jinja = chat_template_of(config.template)
        if jinja:
            processor.chat_template = jinja
    else:  # model.base (its adapter folded in: it is the reference), or the parts in model.*
        model, processor, _ = compose_model(config)
    model.config.use_cache = False
    model.config.text_config.use_cache = False
    if uses_4bit(config):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.optim.gradient_checkpointing is True)
    if not uses_lora(config):  # full: LLM (+ projector) train; the reference is TRL's frozen copy of the start
        apply_stage_policy(model, config.stage, "full", train_vision=config.model.train_vision)
    model.train()
    return model, processor


def trainer_arguments(config: RunConfig) -> dict:
    """The engine's training_arguments as the TRL config class of `preference.loss`, with its loss fields."""
    p = config.preference
    if p.loss in REFERENCE_FREE:
        from vistune.train.stages import reference_free

        return reference_free.arguments(p.loss, p.beta, p.sft_weight, p.simpo_gamma, config.data.max_length)
    loss_type, weights = [DPO_LOSSES[p.loss]], [1.0]
    if p.sft_weight > 0:
        loss_type.append("sft")
        weights.append(p.sft_weight)
    return {"cls": DPOConfig, "beta": p.beta, "loss_type": loss_type, "loss_weights": weights,
            "max_length": None}  # vistune's tokeniser has already dropped pairs that do not fit


def build_run(config: RunConfig, skips):
    """Model, pairs and collator. The auto switches resolve to what this stage supports: no packing (TRL's rows
    are chosen / rejected pairs), no Liger (TRL fuses its own log-prob head), checkpointing on."""
    from vistune.train.run.build import BuiltRun

    if config.data.packing is True or config.optim.liger is True:
        raise ConfigError("stage prefer supports neither data.packing nor optim.liger: set them to false")
    config.data.packing, config.optim.liger = False, False
    if config.optim.gradient_checkpointing not in (True, False):
        config.optim.gradient_checkpointing = True
    model, processor = build_model(config)
    dataset, collator = build_dataset(config, processor, model, skips)
    return BuiltRun(model, processor, dataset, collator, [])


def build_dataset(config: RunConfig, processor, model, skips):
    """(datasets.Dataset of tokenised pairs, PreferenceCollator); bad pairs go to `skips`."""
    from vistune.data_prep import ImageTransform, get_template
    from vistune.data_prep.batching.preference import PreferenceCollator, load_pairs, tokenize_dataset
    from vistune.model import num_image_tokens
    from vistune.model.compose import llava_of

    pairs = load_pairs(config.data.path, skips=skips)
    dataset = tokenize_dataset(pairs, processor.tokenizer, get_template(config.template),
                               num_image_tokens=num_image_tokens(llava_of(model)), max_length=config.data.max_length,
                               skips=skips, source=config.data.path)
    if len(dataset) == 0:
        raise ValueError(f"{config.data.path}: no usable preference pair ({skips.summary()})")
    pad = processor.tokenizer.pad_token_id
    pad = pad if pad is not None else processor.tokenizer.eos_token_id
    collator = PreferenceCollator(pad_token_id=pad, transform=ImageTransform(processor.image_processor,
                                                                             config.data.aspect),
                                  image_root=config.data.image_root or str(Path(config.data.path).parent),
                                  skips=skips, source=config.data.path)
    return dataset, collator


class PreferenceTrainer(VistuneTrainer, DPOTrainer):
    """VistuneTrainer's machinery over TRL's DPOTrainer (sigmoid, ipo); the loss and its metrics (rewards, margins,
    accuracy) are DPOTrainer's own."""

    def loss_and_outputs(self, model, inputs: dict, num_items_in_batch=None):
        return DPOTrainer.compute_loss(self, model, inputs), None  # TRL builds no logits (fused log-probs)


def reference_model(config: RunConfig):
    """full: a frozen second copy of the start model (TRL would reload it from the model's hub name, which a
    model merged in memory or composed from parts does not have)."""
    model, _ = build_model(config)
    model.eval()
    for param in model.parameters():
        param.requires_grad = False
    return model


def pair_sampler_fn(config: RunConfig, dataset):
    """LLaVA's modality-length grouping over pairs (the longer reply's length), or None (Trainer's shuffle)."""
    if not config.data.group_by_length:
        return None
    from vistune.data_prep import LengthGroupedSampler
    from vistune.data_prep.batching.preference import pair_lengths

    lengths = pair_lengths(dataset)
    return lambda args: LengthGroupedSampler(lengths, batch_size=args.per_device_train_batch_size,
                                             world_size=args.world_size, seed=config.seed,
                                             megabatch_mult=config.data.group_megabatches)


def make_trainer(config: RunConfig, **kwargs) -> VistuneTrainer:
    """PreferenceTrainer (DPO losses), or the reference-free trainer of `preference.loss` (no reference model)."""
    from vistune.model import lora_config

    model = kwargs.pop("model")
    peft_config = lora_config(model, lora_settings(config)) if uses_lora(config) else None
    sampler = pair_sampler_fn(config, kwargs["train_dataset"])
    processor = kwargs["run_files"]["processor"]
    if config.preference.loss in REFERENCE_FREE:
        from vistune.train.stages.reference_free import TRAINERS

        trainer = TRAINERS[config.preference.loss](model=model, processing_class=processor.tokenizer,
                                                   peft_config=peft_config, train_sampler_fn=sampler, **kwargs)
    else:
        trainer = PreferenceTrainer(model=model, ref_model=None if peft_config else reference_model(config),
                                    processing_class=processor, peft_config=peft_config, train_sampler_fn=sampler,
                                    **kwargs)
    if peft_config is not None:  # only the adapter trains: the adapter-free network must stay the reference
        from vistune.model import apply_stage_policy

        apply_stage_policy(trainer.model, "prefer", config.method)
    return trainer
