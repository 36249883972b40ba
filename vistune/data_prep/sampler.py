"""Length-grouped sampling in the spirit of LLaVA's modality-length grouping.

Image and text-only samples are kept in separate megabatches (world_size * batch_size * megabatch_mult samples,
sorted by length inside), so every step sees similar lengths and one modality; megabatch order is shuffled.
LLaVA's megabatch is one step's samples (mult 1): it balances ranks but leaves a single process's padding as it
is; a larger mult (HF's sampler uses 50) also groups lengths across steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """Yields dataset indices; `lengths` are modality lengths (+ image samples, - text-only samples)."""

    def __init__(self, lengths: list[int], batch_size: int, world_size: int = 1, seed: int = 0,
                 megabatch_mult: int = 1):
        if batch_size < 1 or world_size < 1 or megabatch_mult < 1:
            raise ValueError("batch_size, world_size and megabatch_mult must be >= 1")
        self.lengths = list(lengths)
        self.megabatch = batch_size * world_size * megabatch_mult
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        groups = [[i for i, n in enumerate(self.lengths) if n > 0], [i for i, n in enumerate(self.lengths) if n <= 0]]
        full, tails = [], []
        for group in groups:
            order = [group[j] for j in torch.randperm(len(group), generator=g).tolist()]
            chunks = [order[k : k + self.megabatch] for k in range(0, len(order), self.megabatch)]
            chunks = [sorted(c, key=lambda i: -abs(self.lengths[i])) for c in chunks]
            if chunks and len(chunks[-1]) < self.megabatch:
                tails.append(chunks.pop())
            full.extend(chunks)
        full = [full[j] for j in torch.randperm(len(full), generator=g).tolist()]
        tail = sorted((i for c in tails for i in c), key=lambda i: -abs(self.lengths[i]))
        return [i for chunk in full for i in chunk] + tail
