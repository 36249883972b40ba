"""Per-module training: the vision tower, projector and LLM each at their own rate (read back from the optimizer the
engine steps, as log.jsonl records it), the tower trained whole or through its own LoRA, and both exported."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import REPO, TINY, assert_export_logits, subprocess_env, tiny_overrides
from tests.train.helpers import fixed_batch, logits
from vistune.model import load_trained
from vistune.train.run.config import ConfigError, load_config
from vistune.train.stages.engine import train

RATES = {"optim.vision_lr": 1e-5, "optim.projector_lr": 2e-5, "optim.llm_lr": 3e-4, "optim.lr": 5e-4,
         "optim.scheduler": "constant", "optim.warmup_ratio": 0, "model.projector": "null", "save_steps": 0,
         "optim.max_steps": 2, "lora.dropout": 0}
EXPECTED = {"lr_vision": 1e-5, "lr_projector": 2e-5, "lr_llm": 3e-4}


def _first_logged(out: Path) -> dict:
    return next(e for e in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in e)


def _rates(entry: dict) -> dict:
    return {k: pytest.approx(v, rel=1e-9) for k, v in entry.items() if k.startswith("lr_")}


def test_full_tower_trains_at_its_own_rate_and_is_saved(shapes, tmp_path):
    from vistune.model import build_llava, ensure_tiny_parts

    config = load_config(TINY / "instruct_lora.yaml", tiny_overrides(
        shapes, tmp_path, **RATES, **{"model.train_vision": "full", "optim.vision_gradient_checkpointing": "true"}))
    result = train(config)
    assert _rates(_first_logged(tmp_path)) == EXPECTED
    assert not config.optim.gradient_checkpointing  # the LLM's is off; the tower's own switch is on
    tower = result.model.get_base_model().model.vision_tower
    assert any(getattr(m, "gradient_checkpointing", False) for m in tower.modules())
    saved = load_file(str(tmp_path / "vision_tower.safetensors"))
    vision, llm = ensure_tiny_parts()
    untrained = build_llava(str(vision), str(llm))[0].model.vision_tower.state_dict()
    assert set(saved) == set(untrained)
    assert any(not torch.equal(saved[k], untrained[k]) for k in saved)  # the tower moved
    reloaded, processor, _ = load_trained(tmp_path)
    batch = fixed_batch(config, processor, reloaded)
    batch.pop("labels")
    torch.testing.assert_close(logits(reloaded, batch), logits(result.model, batch), rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def vision_lora_run(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("vision-lora")
    config = load_config(TINY / "instruct_lora.yaml", tiny_overrides(
        shapes, out, **RATES, **{"model.train_vision": "lora", "lora.vision_r": 4, "lora.vision_alpha": 8}))
    result = train(config)
    batch = fixed_batch(config, *reversed(load_trained(out)[:2]))
    batch.pop("labels")
    return result, batch, out


def test_vision_lora_has_its_own_rank_and_rate(vision_lora_run):
    result, _, out = vision_lora_run
    assert _rates(_first_logged(out)) == EXPECTED
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    vision = {k: v.shape for k, v in adapter.items() if "vision_tower" in k}
    llm = {k: v.shape for k, v in adapter.items() if "language_model" in k}
    assert vision and llm
    assert {s[0] for k, s in vision.items() if "lora_A" in k} == {4}
    assert {s[0] for k, s in llm.items() if "lora_A" in k} == {8}
    tower = [n for n, p in result.model.named_parameters() if "vision_tower" in n and p.requires_grad]
    assert tower and all("lora_" in n for n in tower)


@pytest.mark.parametrize("mode", ["merged", "base+lora"])
def test_vision_lora_exports_both_ways(mode, vision_lora_run, tmp_path):
    from vistune.train.saving.export import export

    result, batch, out = vision_lora_run
    expected = logits(result.model, batch)
    exported = export(out, tmp_path / "export", mode=mode, dtype="float32")
    assert_export_logits(exported, mode, batch, expected, tmp_path, atol=1e-5)


def test_vision_lora_without_an_llm_adapter_is_a_config_error(shapes, tmp_path):
    with pytest.raises(ConfigError, match="train_vision: lora"):
        load_config(TINY / "instruct_full.yaml", tiny_overrides(shapes, tmp_path, **{"model.train_vision": "lora"}))
    old = load_config(TINY / "align.yaml", tiny_overrides(shapes, tmp_path, **{"model.train_vision": "true"}))
    assert old.model.train_vision == "full"  # the boolean of older configs


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_group_rates_survive_deepspeed(zero, shapes, tmp_path):
    """Two processes under ZeRO-2 / ZeRO-3: after the first step the engine's optimizer holds each group's rate."""
    out = tmp_path / "run"
    cmd = ["deepspeed", "--num_gpus", "2", "--no_local_rank", "--module", "vistune.cli", "train",
           str(TINY / "instruct_lora.yaml"),
           *tiny_overrides(shapes, out, **{**RATES, "model.train_vision": "full", "optim.per_device_batch_size": 2,
                                           "optim.max_steps": 1},
                           deepspeed=REPO / "configs" / "deepspeed" / f"{zero}.json")]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert _rates(_first_logged(out)) == EXPECTED
    assert (out / "vision_tower.safetensors").is_file()
