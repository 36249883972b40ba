"""Padding-free batching: the samples of a batch laid end to end in one row, positions restarting per sample.

The model sees `position_ids` (0..n-1 for each sample) and no `attention_mask`; the attention implementation
keeps samples apart (flash-attention varlen on GPU, `vistune.model.segment_attention` on CPU). Each sample's
first label is ignored so no sample learns to predict the next sample's first token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vistune import IGNORE_INDEX
from vistune.data_prep.images.inputs import collate_images


@dataclass
class PackedCollator:
    """Samples -> {"input_ids", "labels", "position_ids"} of shape [1, total tokens], "ids", "pixel_values"."""

    pad_token_id: int  # unused by packing itself; kept so it is a drop-in for DataCollator

    def __call__(self, samples: list[dict | None]) -> dict:
        samples = [s for s in samples if s is not None]
        if not samples:  # every sample failed to load: an empty batch with every key (the Trainer counts labels)
            empty = torch.zeros((0, 0), dtype=torch.long)
            return {"input_ids": empty, "attention_mask": empty.clone(), "labels": empty.clone(), "ids": []}
        labels = []
        for s in samples:
            row = s["labels"].clone()
            row[0] = IGNORE_INDEX  # the previous sample's last token must not be trained to predict it
            labels.append(row)
        batch = {
            "input_ids": torch.cat([s["input_ids"] for s in samples]).unsqueeze(0),
            "labels": torch.cat(labels).unsqueeze(0),
            "position_ids": torch.cat([torch.arange(len(s["input_ids"])) for s in samples]).unsqueeze(0),
            "ids": [s["id"] for s in samples],
        }
        batch.update(collate_images(samples))  # pixel_values (+ AnyRes image_sizes), every sample's images in order
        return batch


def segment_lengths(position_ids: torch.Tensor) -> list[int]:
    """Lengths of the samples packed in one row of `position_ids` (a new sample starts where positions reset)."""
    row = position_ids.reshape(-1)
    starts = (row == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    return [b - a for a, b in zip(starts, [*starts[1:], len(row)])]
