"""Chunked cross-entropy (`optim.cross_entropy: chunked`): logits only where a label is supervised, CE in chunks.

LLaVA supervises replies only: image tokens (576 per sample), system prompt and questions never need logits.
The collator adds `logits_to_keep` (positions whose next token is supervised, a public LlavaForConditionalGeneration
argument), so lm_head runs on those rows alone; the loss is the same sum of CE over the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vistune import IGNORE_INDEX

CHUNK = 1024  # positions per CE chunk (bounds the float32 copy of the logits)


def supervised_positions(labels: torch.Tensor) -> torch.Tensor:
    """Positions p (over all rows) whose next label labels[:, p + 1] is supervised in some row."""
    if labels.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    nxt = (labels[:, 1:] != IGNORE_INDEX).any(0)
    return nxt.nonzero().flatten()


@dataclass
class SupervisedLogitsCollator:
    """Wraps a collator: adds `logits_to_keep` computed from the batch's labels."""

    inner: object  # DataCollator or PackedCollator

    def __call__(self, samples):
        batch = self.inner(samples)
        if batch["input_ids"].numel():
            batch["logits_to_keep"] = supervised_positions(batch["labels"])
        return batch


def supervised_cross_entropy(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """HF causal-LM loss (sum over supervised tokens / num_items_in_batch) on logits kept at supervised positions."""
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    keep = supervised_positions(labels).to(labels.device)
    targets = labels[:, keep + 1]
    total = logits.sum() * 0.0  # stays in the graph when nothing is supervised
    for start in range(0, keep.numel(), CHUNK):
        chunk = logits[:, start:start + CHUNK].float()
        total = total + F.cross_entropy(chunk.reshape(-1, chunk.shape[-1]), targets[:, start:start + CHUNK].reshape(-1),
                                        ignore_index=IGNORE_INDEX, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum().clamp(min=1)
    if isinstance(count, torch.Tensor):
        count = count.to(total.device)
    return total / count
