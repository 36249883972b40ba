"""Shared test helpers: a fixed batch from a run's own data pipeline, and logits / loss on it."""

from __future__ import annotations

import torch


def fixed_batch(config, processor, model) -> dict:
    """Every record of `config.data.path`, through the training pipeline, as one padded batch (no ids) with logits at
    every position: the batch eval and generation see. Never packed (a reloaded model runs transformers' SDPA with a
    KV cache, which does not keep packed samples apart, docs/performance.md), and without chunked CE's
    `logits_to_keep` (the model's own loss needs every position's logits)."""
    import copy

    from vistune.data_prep import SkipLog
    from vistune.train.run.build import build_dataset

    config = copy.deepcopy(config)
    config.data.packing, config.optim.cross_entropy = False, "full"
    dataset, collator = build_dataset(config, processor, model, SkipLog())
    batch = collator([dataset[i] for i in range(len(dataset))])
    batch.pop("ids")
    return batch


def _eval(model) -> None:
    from vistune.model.checkpoints.load import keep_4bit_training_kernel

    model.eval()
    keep_4bit_training_kernel(model)  # the in-memory QLoRA model, as load_trained does for reloaded ones


@torch.no_grad()
def logits(model, batch: dict) -> torch.Tensor:
    _eval(model)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits.float()


@torch.no_grad()
def loss(model, batch: dict) -> float:
    _eval(model)
    return float(model(**batch).loss)


HUB_PREFIXES = ("language_model.model.", "language_model.lm_head.", "vision_tower.vision_model.",
                "multi_modal_projector.", "image_newline")


def assert_hub_layout(export) -> set[str]:
    """Every weight of an export under a llava-hf hub name (the names vLLM reads); returns the prefixes seen."""
    from pathlib import Path

    from safetensors import safe_open

    keys = []
    for path in sorted(Path(export).glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            keys += list(f.keys())
    off = [k for k in keys if not k.startswith(HUB_PREFIXES)]
    assert keys and not off, f"weights outside the hub layout: {off[:5]}"
    return {p for p in HUB_PREFIXES if any(k.startswith(p) for k in keys)}
