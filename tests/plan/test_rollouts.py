"""`vistune plan` for a stage-rl recipe: rollout sequences and generated tokens per step; each prompt counts as
rl.num_generations training sequences."""

from __future__ import annotations

from pathlib import Path

from vistune.plan.datasets import DatasetStats
from vistune.plan.rollouts import completion_sequences, rollout_cost
from vistune.train.run.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_rollout_cost_of_the_7b_recipe_on_8_gpus():
    config = load_config(REPO / "configs" / "llava-1.5-7b" / "rl_lora.yaml")
    cost = rollout_cost(config, world_size=8)
    assert (cost.rows, cost.prompts, cost.max_new_tokens, cost.reference) == (256, 32, 4096, False)
    cost = rollout_cost(load_config(REPO / "configs" / "llava-1.5-7b" / "rl_lora.yaml", ["rl.beta=0.04"]), 2)
    assert (cost.rows, cost.prompts, cost.reference) == (64, 8, True)
    assert "8 prompts x 8 completions = 64 sequences" in cost.line()


def test_each_prompt_trains_as_num_generations_sequences():
    data = DatasetStats("x", 1000, 60.0, 1.0, 120, "test")
    seqs = completion_sequences(data, num_generations=8, max_completion_length=16)
    assert (seqs.samples, seqs.mean_text_tokens, seqs.longest_text_tokens) == (8000, 76.0, 136)
