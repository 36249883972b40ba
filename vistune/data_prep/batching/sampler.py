"""Length-grouped sampling in the spirit of LLaVA's modality-length grouping.

Image and text-only samples are kept in separate megabatches (world_size * batch_size * megabatch_mult samples,
sorted by length inside), so every step sees similar lengths and one modality; megabatch order is shuffled.
LLaVA's megabatch is one step's samples (mult 1): it balances ranks but leaves a single process's padding as it
is; a larger mult (HF's sampler uses 50) also groups lengths across steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """Yields dataset indices; `lengths` are modality lengths (+ image samples, - text-only samples).

    Lengths and the order are numpy arrays (8 bytes an index): on LLaVA-665k every rank holds ~10 MB here, where
    Python lists of ints would take ~100 MB per rank while an epoch's order is built."""

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, world_size: int = 1, seed: int = 0,
                 megabatch_mult: int = 1):
        if batch_size < 1 or world_size < 1 or megabatch_mult < 1:
            raise ValueError("batch_size, world_size and megabatch_mult must be >= 1")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.megabatch = batch_size * world_size * megabatch_mult
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        for start in range(0, len(order), 4096):  # Python ints a block at a time, never the whole epoch
            yield from order[start : start + 4096].tolist()

    def indices(self) -> list[int]:
        return self.order().tolist()

    def order(self) -> np.ndarray:
        """This epoch's indices: per modality, a seeded shuffle cut into megabatches, each sorted longest first
        (stable); full megabatches in a seeded order, then the two modalities' last partial ones merged."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        size = np.abs(self.lengths)
        full, tails = [], []
        for group in (np.flatnonzero(self.lengths > 0), np.flatnonzero(self.lengths <= 0)):
            shuffled = group[torch.randperm(len(group), generator=g).numpy()]
            chunk = np.arange(len(shuffled)) // self.megabatch
            shuffled = shuffled[np.lexsort((-size[shuffled], chunk))]  # longest first inside each megabatch
            whole = len(shuffled) // self.megabatch * self.megabatch
            full.append(shuffled[:whole].reshape(-1, self.megabatch))
            tails.append(shuffled[whole:])
        megabatches = np.concatenate(full)
        megabatches = megabatches[torch.randperm(len(megabatches), generator=g).numpy()]
        tail = np.concatenate(tails)
        return np.concatenate([megabatches.ravel(), tail[np.argsort(-size[tail], kind="stable")]])
