"""scripts/gpu_check.sh on a machine without a GPU: the dry mode says what it would run; its recipes are valid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_says_what_it_would_run_without_a_gpu():
    env = {**os.environ, "GPU_CHECK_PYTHON": sys.executable,
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(["bash", "-n", str(REPO / "scripts" / "gpu_check.sh")], check=True)
    for args, extra in ((["--dry-run"], {}), ([], {"GPU_CHECK_DRY": "1"})):
        out = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), *args], env={**env, **extra},
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        for name in ("lora", "qlora", "packing", "liger", "stage1-vs-llava", "compile", "rl-vllm"):
            assert f"- {name}:" in out.stdout
        assert "settings=padded-sdpa,flash" in out.stdout and "would install" in out.stdout


def test_every_check_is_a_valid_recipe_with_valid_variants(tmp_path):
    import yaml

    from vistune.bench.gpu_check import CHECKS, recipe, table
    from vistune.bench.runner import variants_from
    from vistune.train.run.config import load_config

    for check in CHECKS:
        path = tmp_path / f"{check.name}.yaml"
        path.write_text(yaml.safe_dump(recipe(check, tmp_path / "data", tmp_path / check.name)))
        for variant in variants_from(check.compare):
            config = load_config(path, [*check.overrides, *variant.overrides])
            assert config.model.dtype == "bfloat16" and config.optim.bf16
    result = {"date": "d", "gpu": "g", "checks": {"lora": {"error": "RuntimeError: x"}, "packing": {
        "summary": {"settings=flash": {"samples_per_s": 9.0, "tokens_per_s": 900, "mfu": 0.3, "peak_memory_mib": 1}},
        "ratios": {"settings=flash": {"samples_per_s": {"median": 1.5}}}, "loss_falls": {"settings=flash": True}},
        "rl-vllm": {"rl": {"transformers": {"seconds_per_step": 1.2, "reward": 0.5, "logp_gap_mean": None},
                           "vllm": {"seconds_per_step": 0.4, "reward": 0.6, "logp_gap_mean": 0.01},
                           "vllm_speedup": 3.0}}}}
    text = table(result)
    assert "| packing | settings=flash | 9.0 |" in text and "1.50x" in text and "error: RuntimeError" in text
    assert "| rl-vllm | vllm rollouts | 0.40 s/step |" in text and "3.00x (vLLM)" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only check")
def test_without_a_gpu_the_real_run_refuses_with_exit_2():
    from vistune.bench.gpu_check import main

    assert main(["--out", "unused"]) == 2
