"""Pretrain the tiny parts the way real ones are made, in seconds on a CPU.

A tiny CLIP learns image-text alignment with the CLIP objective (symmetric cross-entropy over the
in-batch similarity matrix, learned temperature); its vision tower is saved as a standard CLIP vision
checkpoint. A tiny Llama learns the language of a text corpus with next-token prediction. The
quickstart composes LLaVA from these two exactly as users compose it from hub checkpoints.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vistune.model.tiny.parts import (
    TinySpec,
    tiny_image_processor,
    tiny_llm_config,
    tiny_vision_config,
    train_tiny_tokenizer,
)


@dataclass
class PretrainSettings:
    steps: int = 300  # optimiser steps
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 20  # linear warmup steps, then cosine decay to 10%
    seq_len: int = 64  # LLM: tokens per training row (rows pack several texts)
    position_std: float = 1.0  # CLIP: init std of the patch position embeddings (see _strong_positions)
    seed: int = 0


def _schedule(optimizer, settings: PretrainSettings):
    def factor(step: int) -> float:
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _loop(model, batches: Callable[[random.Random], dict], settings: PretrainSettings, desc: str) -> list[float]:
    """A plain AdamW loop: the tiny parts need nothing more, and it keeps the recipe visible."""
    rng = random.Random(settings.seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr, weight_decay=0.01)
    scheduler = _schedule(optimizer, settings)
    losses = []
    model.train()
    bar = tqdm(range(settings.steps), desc=desc, leave=False, mininterval=1.0)
    for _ in bar:
        loss = model(**batches(rng)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def pretrain_tiny_clip(
    images: Sequence,  # PIL images
    captions: Sequence[str],
    out_dir: str | Path,
    spec: TinySpec | None = None,
    settings: PretrainSettings | None = None,
) -> list[float]:
    """Contrastive CLIP pretraining on image-caption pairs; saves the vision tower + image processor."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig

    spec, settings = spec or TinySpec(), settings or PretrainSettings()
    if len(images) != len(captions) or len(images) < 2:
        raise ValueError(f"need >= 2 image-caption pairs of equal count, got {len(images)} / {len(captions)}")
    torch.manual_seed(settings.seed)
    tokenizer = train_tiny_tokenizer(spec, list(captions))
    processor = tiny_image_processor(spec)
    pixels = processor(images=list(images), return_tensors="pt")["pixel_values"]
    text = tokenizer([c + tokenizer.eos_token for c in captions], padding=False)["input_ids"]
    max_len = min(64, max(len(t) for t in text))
    ids = torch.full((len(text), max_len), tokenizer.eos_token_id)
    mask = torch.zeros_like(ids)
    for i, t in enumerate(text):
        t = t[: max_len - 1] + [tokenizer.eos_token_id] if len(t) > max_len else t
        ids[i, : len(t)] = torch.tensor(t)
        mask[i, : len(t)] = 1
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_len,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    config = CLIPConfig(
        text_config=text_config.to_dict(),
        vision_config=tiny_vision_config(spec).to_dict(),
        projection_dim=spec.vision_hidden,
    )
    clip = CLIPModel(config)
    _strong_positions(clip.vision_model, settings.position_std)
    batch_size = min(settings.batch_size, len(images))

    def batches(rng: random.Random) -> dict:
        idx = torch.tensor(rng.sample(range(len(images)), batch_size))
        return {"input_ids": ids[idx], "attention_mask": mask[idx], "pixel_values": pixels[idx], "return_loss": True}

    losses = _loop(clip, batches, settings, "pretrain tiny CLIP")
    out = Path(out_dir)
    clip.vision_model.save_pretrained(out)  # a CLIPVisionModel: the standard vision-only checkpoint
    processor.save_pretrained(out)
    return losses


def _strong_positions(vision_model, std: float) -> None:
    """Re-initialises the patch position embeddings at a scale that survives training.

    A real CLIP ViT keeps each patch's place in its features, and LLaVA answers "where?" by reading it there.
    At the default init (std 0.02) the place is drowned by the patch content and a few hundred contrastive steps
    do not bring it back: a nearest-centroid probe then reads the shape's position from the shape's own patch
    26% of the time (5 places), and the LLM never learns "where"; at std 1 it reads 99% (16 px patches).
    """
    with torch.no_grad():
        vision_model.embeddings.position_embedding.weight.normal_(std=std)


def pretrain_tiny_llm(
    texts: Sequence[str],
    out_dir: str | Path,
    spec: TinySpec | None = None,
    settings: PretrainSettings | None = None,
) -> list[float]:
    """Next-token pretraining of a tiny Llama (with a tokenizer trained on the same texts); saves both."""
    from transformers import GenerationConfig, LlamaForCausalLM

    spec, settings = spec or TinySpec(), settings or PretrainSettings()
    if not texts:
        raise ValueError("need some text to pretrain the tiny LLM on")
    torch.manual_seed(settings.seed)
    tokenizer = train_tiny_tokenizer(spec, list(texts))
    stream: list[int] = []
    for t in texts:
        stream += tokenizer(t)["input_ids"] + [tokenizer.eos_token_id]
    rows = max(1, len(stream) // settings.seq_len)
    data = torch.tensor(stream[: rows * settings.seq_len] or stream).view(rows, -1)
    model = LlamaForCausalLM(tiny_llm_config(spec, len(tokenizer), tokenizer))
    batch_size = min(settings.batch_size, rows)

    def batches(rng: random.Random) -> dict:
        idx = torch.tensor([rng.randrange(rows) for _ in range(batch_size)])
        return {"input_ids": data[idx], "labels": data[idx]}

    losses = _loop(model, batches, settings, "pretrain tiny LLM")
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return losses
