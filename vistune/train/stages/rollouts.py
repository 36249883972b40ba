"""Rollouts that do not depend on how the batch is laid out over processes.

Each completion samples with its own random stream, seeded by (run seed, step, prompt id, its index among the
prompt's copies in the generation batch): one process and eight draw the same completions for the same global batch,
and a resumed run draws what the uninterrupted one did. Sampling is Gumbel-max (argmax of the warped logits plus
Gumbel noise), which draws exactly from softmax(logits / temperature) after top-k / top-p / min-p, as sampling does.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


def rollout_seeds(ids: list[str], all_ids: list[str], offset: int, seed: int, step: int) -> list[int]:
    """A seed per row of this process's `ids`, which sit at `offset` in `all_ids` (the generation batch gathered
    over processes, in process order): the k-th copy of a prompt in the gathered batch gets the k-th seed of that
    prompt, whichever process holds it."""
    assert all_ids[offset:offset + len(ids)] == ids, "this process's rows are not where the gathered batch says"
    copies, seeds = Counter(), []
    for i, row_id in enumerate(all_ids):
        k = copies[row_id]
        copies[row_id] += 1
        if offset <= i < offset + len(ids):
            digest = hashlib.sha256(f"{seed}/{step}/{row_id}/{k}".encode()).digest()
            seeds.append(int.from_bytes(digest[:8], "little") >> 1)
    return seeds


class SeededSampling(LogitsProcessor):
    """Temperature, top-k, top-p and min-p, then Gumbel noise from one generator per row: greedy decoding over
    these scores samples each row from its own stream."""

    def __init__(self, seeds: list[int], device: torch.device, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, min_p: float | None = None):
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        if top_k:
            warpers.append(TopKLogitsWarper(top_k))
        if top_p is not None and top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p))
        if min_p:
            warpers.append(MinPLogitsWarper(min_p))
        self.warpers = LogitsProcessorList(warpers)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = self.warpers(input_ids, scores.float())
        uniform = torch.stack([torch.rand(scores.size(-1), generator=g, device=scores.device)
                               for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(min=torch.finfo(uniform.dtype).tiny)))
        return scores + gumbel
