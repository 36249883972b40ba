"""Batching: pad to the longest sample, drop samples that failed to load, concatenate all images in order."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vistune import IGNORE_INDEX
from vistune.data_prep.images.inputs import collate_images


@dataclass
class DataCollator:
    pad_token_id: int  # the tokenizer's pad id (labels are padded with IGNORE_INDEX)
    padding_side: str = "right"  # "right" for training, "left" for batched generation

    def __call__(self, samples: list[dict | None]) -> dict:
        samples = [s for s in samples if s is not None]
        if not samples:  # every sample failed to load: an empty batch with every key (the Trainer counts labels)
            empty = torch.zeros((0, 0), dtype=torch.long)
            return {"input_ids": empty, "attention_mask": empty.clone(), "labels": empty.clone(), "ids": []}
        longest = max(len(s["input_ids"]) for s in samples)
        batch = {
            "input_ids": self._pad([s["input_ids"] for s in samples], longest, self.pad_token_id),
            "attention_mask": self._pad([torch.ones_like(s["input_ids"]) for s in samples], longest, 0),
            "labels": self._pad([s["labels"] for s in samples], longest, IGNORE_INDEX),
            "ids": [s["id"] for s in samples],
        }
        batch.update(collate_images(samples))  # pixel_values (+ AnyRes image_sizes), every sample's images in order
        return batch

    def _pad(self, rows: list[torch.Tensor], length: int, value: int) -> torch.Tensor:
        out = torch.full((len(rows), length), value, dtype=rows[0].dtype)
        for i, row in enumerate(rows):
            if self.padding_side == "right":
                out[i, : len(row)] = row
            else:
                out[i, length - len(row):] = row
        return out
