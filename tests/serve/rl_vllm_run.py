"""Runs stage rl with vLLM rollouts (`rl.use_vllm`) under .venv-serve and, before every optimizer step, compares
the weights the colocated vLLM engine generated with against the policy's (LoRA merged in), and the policy's against
the start model's. Writes {"steps": [{"step", "served_vs_policy", "policy_vs_start"}, ...]} (largest relative
differences over every layer's o_proj and down_proj, which vLLM keeps unfused under the hub's names).

    python tests/serve/rl_vllm_run.py OUT.json key=value...   (the run config: configs/tiny/rl_lora.yaml + these)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from vistune.train.run.config import load_config
from vistune.train.saving.hub_layout import hub_name
from vistune.train.stages.engine import train

COMPARED = ("self_attn.o_proj.weight", "mlp.down_proj.weight")


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def compared_weights(model) -> dict[str, torch.Tensor]:
    """The compared weights of a PEFT-wrapped policy, under their hub names (copies)."""
    named = ((hub_name(n.removeprefix("base_model.model.").replace(".base_layer", "")), p)
             for n, p in model.named_parameters())
    return {n: p.detach().clone() for n, p in named if n.endswith(COMPARED)}


class EngineWeights(TrainerCallback):
    """At each optimizer step, after the rollout and before the update: vLLM's weights vs the policy's."""

    trainer = None  # set by vistune's engine

    def __init__(self):
        self.steps = []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        runner = self.trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner
        served = dict(runner.model.named_parameters())
        model = self.trainer.model
        start = compared_weights(model)
        model.merge_adapter()
        try:
            policy = compared_weights(model)
        finally:
            model.unmerge_adapter()
        assert policy and set(policy) <= set(served), sorted(set(policy) - set(served))[:4]
        self.steps.append({"step": state.global_step + 1,
                           "served_vs_policy": max(relative_difference(served[k], policy[k]) for k in policy),
                           "policy_vs_start": max(relative_difference(policy[k], start[k]) for k in policy)})


if __name__ == "__main__":
    out, overrides = Path(sys.argv[1]), sys.argv[2:]
    check = EngineWeights()
    config = load_config(Path(__file__).parents[2] / "configs" / "tiny" / "rl_lora.yaml", overrides)
    train(config, callbacks=[check])
    out.write_text(json.dumps({"steps": check.steps}))
