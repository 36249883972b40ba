"""Stage 1 then stage 2 (lora / qlora / full) on tiny models: loss goes down on a fixed small set, and every
saved artifact (run dir, checkpoint, renamed checkpoint) reloads through `load_trained` with identical logits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import TINY, tiny_overrides
from tests.train.helpers import fixed_batch, logits, loss
from vistune.model import load_trained
from vistune.train.run.config import load_config
from vistune.train.stages.engine import train


def _before_loss(config) -> tuple[float, dict, object]:
    """The loss of the model exactly as the run starts (same seed, same init), on the run's own data."""
    from transformers import set_seed

    from vistune.train.run.build import build_model

    set_seed(config.seed)
    model, processor = build_model(config)
    batch = fixed_batch(config, processor, model)
    return loss(model, batch), batch, processor


@pytest.fixture(scope="module")
def align_run(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("align")
    config = load_config(TINY / "align.yaml", tiny_overrides(shapes, out, "small_align.json", **{"optim.max_steps": 10}))
    before, batch, _ = _before_loss(config)
    result = train(config)
    return config, result, before, batch


def test_align_trains_only_the_projector(align_run):
    config, result, before, batch = align_run
    out = result.output_dir
    assert result.status == "done" and result.global_step == 10
    assert {p.name for p in out.iterdir()} >= {"projector.safetensors", "config.yaml", "base.json", "log.jsonl"}
    assert not (out / "adapter").exists()
    assert set(load_file(str(out / "projector.safetensors"))) == {
        f"multi_modal_projector.linear_{i}.{w}" for i in (1, 2) for w in ("weight", "bias")}
    reloaded, _, template = load_trained(out)
    assert template == "plain"
    assert loss(reloaded, batch) < before
    torch.testing.assert_close(logits(reloaded, batch), logits(result.model, batch), rtol=0, atol=1e-5)
    steps = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 11))
    assert all({"loss", "lr", "grad_norm", "samples_per_s"} <= set(s) for s in steps)


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_instruct_from_the_stage1_projector(method, align_run, shapes, tmp_path):
    _, align, _, _ = align_run
    out = tmp_path / method
    config = load_config(TINY / f"instruct_{method}.yaml", tiny_overrides(
        shapes, out, **{"model.projector": align.output_dir, "optim.max_steps": 8, "save_steps": 4,
                        "save_total_limit": 1, **({"optim.lr": 1e-4} if method == "full" else {})}))
    before, batch, _ = _before_loss(config)
    result = train(config)
    assert result.status == "done" and result.global_step == 8
    trained = logits(result.model, batch)

    # outputs: projector + adapter (LoRA only) or full HF weights, processor files, base.json, manifest
    names = {p.name for p in out.iterdir()}
    assert {"projector.safetensors", "base.json", "config.yaml", "manifest.json", "tokenizer.json",
            "processor_config.json"} <= names
    base = json.loads((out / "base.json").read_text())
    assert (base["stage"], base["method"], base["load_in_4bit"]) == ("instruct", method, method == "qlora")
    if method == "full":
        assert json.loads((out / "config.json").read_text())["model_type"] == "llava" and "adapter" not in names
    else:
        adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
        assert not adapter_cfg.get("modules_to_save")
        keys = load_file(str(out / "adapter" / "adapter_model.safetensors"))
        assert keys and all("lora_" in k and "language_model" in k for k in keys)
    # only the newest complete checkpoint is kept (save_total_limit 1), and it is self-contained
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-8"]

    # every artifact reloads with identical logits; the loss went down on the fixed set
    reloaded, processor, template = load_trained(out)
    assert template == "vicuna_v1"
    assert loss(reloaded, batch) < before
    torch.testing.assert_close(logits(reloaded, batch), trained, rtol=0, atol=1e-5)
    renamed = tmp_path / "any-name-at-all"
    shutil.copytree(out / "checkpoint-8", renamed)
    from_ckpt, _, _ = load_trained(renamed)
    torch.testing.assert_close(logits(from_ckpt, batch), trained, rtol=0, atol=1e-5)
    merged, _, _ = load_trained(out, merge=True)
    torch.testing.assert_close(logits(merged, batch), trained, rtol=0, atol=1e-4)


def test_projector_has_its_own_learning_rate(align_run, shapes, tmp_path):
    from vistune.train.loop.trainer import VistuneTrainer
    from vistune.train.run.build import build_model
    from vistune.train.stages.engine import training_arguments

    _, align, _, _ = align_run
    config = load_config(TINY / "instruct_lora.yaml", tiny_overrides(
        shapes, tmp_path, **{"model.projector": align.output_dir, "optim.lr": 3e-4, "optim.projector_lr": 2e-5}))
    model, _ = build_model(config)
    trainer = VistuneTrainer(model=model, args=training_arguments(config), module_lrs=config.module_lrs())
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        kinds = {"projector" if "multi_modal_projector" in names[id(p)] else "lora" for p in group["params"]}
        assert len(kinds) == 1
        assert group["lr"] == (2e-5 if kinds == {"projector"} else 3e-4)
