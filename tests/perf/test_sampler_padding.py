"""Length grouping on one process: LLaVA's one-step megabatch leaves padding as it is; a larger one removes it."""

from __future__ import annotations

import random


def _padding(lengths: list[int], order: list[int], batch: int) -> float:
    slots = tokens = 0
    for k in range(0, len(order), batch):
        chunk = [abs(lengths[i]) for i in order[k:k + batch]]
        slots += max(chunk) * len(chunk)
        tokens += sum(chunk)
    return 1 - tokens / slots


def test_megabatch_mult_reduces_padding():
    from vistune.data_prep import LengthGroupedSampler

    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(80, 140), rng.randint(200, 500)]) for _ in range(800)]
    llava = LengthGroupedSampler(lengths, batch_size=8, megabatch_mult=1, seed=0).indices()
    wide = LengthGroupedSampler(lengths, batch_size=8, megabatch_mult=16, seed=0).indices()
    assert sorted(llava) == sorted(wide) == list(range(800))
    assert _padding(lengths, wide, 8) < 0.5 * _padding(lengths, llava, 8)
