"""The rollout cost of a stage-rl recipe: prompts, completions and generated tokens per optimizer step."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vistune.plan.datasets import DatasetStats


@dataclass
class RolloutCost:
    rows: int  # completions per optimizer step (all GPUs): per-GPU batch x grad_accum x GPUs
    prompts: int  # distinct prompts per optimizer step: rows / rl.num_generations
    max_new_tokens: int  # generated tokens per step at most: rows x rl.max_completion_length
    reference: bool  # rl.beta > 0: one no-grad reference forward per row (the adapter-free network with LoRA)

    def line(self) -> str:
        ref = "; + a no-grad reference forward per completion (rl.beta > 0)" if self.reference else ""
        return (f"rl rollouts (generation time is not in the time estimate) per optimizer step: {self.prompts} prompts x {self.rows // max(1, self.prompts)} "
                f"completions = {self.rows} sequences, up to {self.max_new_tokens:,} generated tokens (decoded one "
                f"token per forward with a KV cache, then one scoring forward + backward per sequence){ref}")


def rollout_cost(config, world_size: int) -> RolloutCost:
    """The rollout cost of a `vistune.train.run.config.RunConfig` with stage rl on `world_size` GPUs."""
    rl, o = config.rl, config.optim
    rows = o.per_device_batch_size * o.grad_accum * world_size
    return RolloutCost(rows, rows // rl.num_generations, rows * rl.max_completion_length, rl.beta > 0)


def completion_sequences(data: DatasetStats, num_generations: int, max_completion_length: int) -> DatasetStats:
    """The prompts as the sequences stage rl trains on: each prompt num_generations times, each with a completion
    of at most max_completion_length tokens (planned at that length)."""
    longest = None if data.longest_text_tokens is None else data.longest_text_tokens + max_completion_length
    return dataclasses.replace(data, samples=data.samples * num_generations,
                               mean_text_tokens=data.mean_text_tokens + max_completion_length,
                               longest_text_tokens=longest,
                               source=f"{data.source}; x {num_generations} completions of <= {max_completion_length} "
                                      "tokens")
