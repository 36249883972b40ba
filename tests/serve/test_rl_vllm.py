"""Stage rl with vLLM rollouts (`rl.use_vllm`: TRL's colocate mode) on vLLM's CPU build: the engine loads the start
model in the hub layout and, before every rollout, gets the policy's weights (LoRA merged, under the hub's names), so
it samples from the policy being trained, not from the start model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from safetensors import safe_open

from tests.serve.conftest import vllm_env
from tests.train.conftest import REPO, TINY

DRIVER = Path(__file__).with_name("rl_vllm_run.py")
BF16 = 2 ** -7  # vLLM's CPU build runs a float32 model in bfloat16 (its "auto" dtype): weights agree to ~2^-8


@pytest.mark.slow
def test_vllm_rollouts_sample_from_the_policy(serve_bin, vllm_exports, tmp_path):
    out = tmp_path / "rl-vllm"
    # the reward module by its file's folder: lmms-eval's dependency latex2sympy2 installs a top-level `tests`
    # package into .venv-serve, which shadows this repository's (a namespace package)
    env = {**vllm_env(), "PYTHONPATH": str(REPO / "tests" / "train")}
    cmd = [str(serve_bin / "python"), str(DRIVER), str(tmp_path / "weights.json"), f"output_dir={out}",
           f"data.path={vllm_exports.rl_data}", f"data.image_root={vllm_exports.rl_data.parent}",
           f"rl.start={vllm_exports.base}", "save_steps=0", "optim.max_steps=4", "optim.lr=1e-2", "rl.use_vllm=true",
           "rl.rewards=[rl_rewards:length]", "rl.reward_weights=[]"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    steps = json.loads((tmp_path / "weights.json").read_text())["steps"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    for s in steps:  # the weights vLLM generated with are the policy's at that step...
        assert s["served_vs_policy"] < BF16, s
    assert steps[-1]["policy_vs_start"] > 5 * BF16  # ...which has moved from the start (a stale engine would fail)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all("sampling/sampling_logp_difference/mean" in e for e in log)
    with safe_open(str(out / "start-model" / "model.safetensors"), "pt") as f:
        assert any(k.startswith("vision_tower.vision_model.") for k in f.keys())
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(vllm_exports.base)  # the start, not vLLM's copy of it


def test_qlora_with_vllm_rollouts_is_refused(tmp_path):
    from vistune.train.run.config import ConfigError, load_config
    from vistune.train.stages.rl import build_run

    config = load_config(TINY / "rl_lora.yaml", ["method=qlora", "rl.use_vllm=true", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="rl.use_vllm supports methods lora and full"):
        build_run(config, None)


@pytest.mark.slow
def test_the_gpu_checks_rl_comparison_runs_on_vllms_cpu_build(serve_bin, vllm_exports, tmp_path):
    """scripts/gpu_check.sh's rl-vllm check (vistune.bench.gpu_check.rl_check): its recipe, both rollout paths,
    the figures it reports; from the head-size-64 export instead of SmolLM2 (float32: no bf16 units here)."""
    script = f"""
import json, sys, yaml
from pathlib import Path
from vistune.bench.gpu_check import CHECKS, recipe, rl_check
check = next(c for c in CHECKS if c.name == "rl-vllm")
check.steps = 3
out = Path({str(tmp_path / "check")!r})
out.mkdir()
(out / "rl.yaml").write_text(yaml.safe_dump(recipe(check, Path({str(vllm_exports.rl_data.parent)!r}), out)))
overrides = ("rl.start={vllm_exports.base}", "model.preset=tiny", "model.dtype=float32", "optim.bf16=false",
             "optim.tf32=false")
print("RESULT", json.dumps(rl_check(out / "rl.yaml", out, overrides)))
"""
    proc = subprocess.run([str(serve_bin / "python"), "-c", script], cwd=REPO, env=vllm_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert rows["transformers"]["logp_gap_mean"] is None  # no second engine to compare with
    assert 0 <= rows["vllm"]["logp_gap_mean"] < 0.5
    assert all(rows[k]["seconds_per_step"] > 0 for k in ("transformers", "vllm")) and rows["vllm_speedup"] > 0
