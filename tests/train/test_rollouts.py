"""Seeded rollouts: a row's seed and samples depend on its prompt and copy, not on the process or the rows beside it,
and Gumbel-max over the warped scores draws from the distribution sampling would."""

from __future__ import annotations

import torch

from vistune.train.stages.rollouts import SeededSampling, rollout_seeds

BATCH = ["a", "a", "a", "a", "b", "b", "b", "b"]  # two prompts, four copies each, as TRL's sampler groups them


def test_a_copy_keeps_its_seed_whichever_process_holds_it():
    one = rollout_seeds(BATCH, BATCH, 0, seed=0, step=3)
    two = rollout_seeds(BATCH[:4], BATCH, 0, 0, 3) + rollout_seeds(BATCH[4:], BATCH, 4, 0, 3)
    assert one == two and len(set(one)) == 8
    four = [s for p in range(4) for s in rollout_seeds(BATCH[2 * p:2 * p + 2], BATCH, 2 * p, 0, 3)]
    assert four == one
    assert set(rollout_seeds(BATCH, BATCH, 0, 0, 4)).isdisjoint(one)  # a new step draws anew
    assert set(rollout_seeds(BATCH, BATCH, 0, 1, 3)).isdisjoint(one)  # and so does a new run seed


def _draws(sampling: SeededSampling, logits: torch.Tensor, n: int) -> torch.Tensor:
    ids = torch.zeros((logits.size(0), 1), dtype=torch.long)
    return torch.stack([sampling(ids, logits.clone()).argmax(-1) for _ in range(n)], dim=1)


def test_a_rows_samples_do_not_depend_on_the_rows_beside_it():
    logits = torch.randn(3, 50)
    together = _draws(SeededSampling([11, 12, 13], torch.device("cpu")), logits, 20)
    alone = _draws(SeededSampling([12], torch.device("cpu")), logits[1:2], 20)
    assert torch.equal(together[1], alone[0]) and not torch.equal(together[0], together[1])


def test_gumbel_max_draws_from_the_tempered_top_p_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]])
    n = 10000
    samples = _draws(SeededSampling([7], torch.device("cpu"), temperature=0.7, top_p=0.9), logits, n)[0]
    probs = torch.softmax(logits[0] / 0.7, -1)
    keep = torch.cumsum(probs, 0) - probs < 0.9  # the smallest set whose mass reaches 0.9
    expected = torch.where(keep, probs, 0) / probs[keep].sum()
    freq = torch.bincount(samples, minlength=5).float() / n
    assert torch.all(freq[~keep] == 0)
    assert torch.allclose(freq, expected, atol=4 * (expected * (1 - expected) / n).sqrt().max().item())
