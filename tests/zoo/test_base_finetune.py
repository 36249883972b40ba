"""`model.base`: fine-tune an existing Llava (a llava-hf-layout directory, a vistune export) with lora / qlora /
full; the export loads and generates in plain transformers; LoRA leaves the base weights bitwise unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch


def _config(base, shapes, out, method: str, **extra):
    from vistune.train.run.config import load_config

    items = {"model.base": str(base), "model.dtype": "float32", "method": method, "data.path": str(shapes / "small.json"),
             "data.image_root": str(shapes), "data.max_length": 128, "data.num_workers": 0, "lora.r": 8,
             "lora.alpha": 16, "optim.lr": 2e-3, "optim.max_steps": 6, "optim.per_device_batch_size": 4,
             "optim.gradient_checkpointing": False, "optim.bf16": False, "optim.tf32": False, "output_dir": str(out),
             "save_steps": 0, "seed": 0, **extra}
    return load_config(None, [f"{k}={v}" for k, v in items.items()])


def _losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]


def _generate_plain(export_dir) -> torch.Tensor:
    """The export in plain transformers (no vistune import): load, one greedy generation on an image prompt."""
    code = f"""
import sys, numpy as np, torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
m = LlavaForConditionalGeneration.from_pretrained({str(export_dir)!r}, dtype=torch.float32)
p = AutoProcessor.from_pretrained({str(export_dir)!r})
img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
b = p(images=[img], text=["<image>\\nWhat colour is the shape?"], return_tensors="pt")
out = m.generate(**b, max_new_tokens=4, do_sample=False)
assert out.shape[1] == b["input_ids"].shape[1] + 4 or out[0, -1] == m.generation_config.eos_token_id, out.shape
print("generated", out.shape[1] - b["input_ids"].shape[1])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "generated" in result.stdout


def _base_weights(base) -> dict:
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(base, dtype=torch.float32).state_dict()


@pytest.fixture(scope="module")
def vistune_export(zoo, shapes, tmp_path_factory):
    """A vistune merged export (one short LoRA run from the llava-hf layout), to start again from."""
    from vistune.train.saving.export import export
    from vistune.train.stages.engine import train

    root = tmp_path_factory.mktemp("vistune-export")
    train(_config(zoo.llava_hf(), shapes, root / "run", "lora", **{"optim.max_steps": 2}))
    return export(root / "run", root / "export", mode="merged", dtype="float32")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["llava-hf", "vistune-export"])
@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_finetune_from_a_base(zoo, shapes, tmp_path, request, source, method):
    from vistune.model.compose import llava_of
    from vistune.train.saving.export import export
    from vistune.train.stages.engine import train

    base = zoo.llava_hf() if source == "llava-hf" else request.getfixturevalue("vistune_export")
    config = _config(base, shapes, tmp_path / "run", method)
    assert config.template == "auto"  # the base's own chat template
    result = train(config)
    losses = _losses(tmp_path / "run")
    assert losses[-1] < losses[0], losses
    if method == "lora":  # the base weights outside the adapter (the projector trains) are bitwise unchanged
        before = _base_weights(base)
        after = {k.replace(".base_layer", ""): v for k, v in llava_of(result.model).state_dict().items()
                 if "lora_" not in k}
        for name, value in before.items():
            if "multi_modal_projector" not in name:
                assert torch.equal(after[name].float(), value), name
    out = export(tmp_path / "run", tmp_path / "export", mode="merged", dtype="float32")
    _generate_plain(out)


@pytest.mark.slow
def test_continue_from_vistune_base_lora_export(zoo, shapes, tmp_path):
    from vistune.train.saving.export import export
    from vistune.train.stages.engine import train

    first = _config(zoo.llava_hf(), shapes, tmp_path / "run1", "lora", **{"data.template": "vicuna_v1", "data.max_length": 400})
    train(first)
    base = export(tmp_path / "run1", tmp_path / "export1", mode="base+lora", dtype="float32")
    for mode, method in (("continue", "lora"), ("merge", "lora"), ("continue", "qlora")):
        config = _config(base, shapes, tmp_path / f"run-{mode}", method,
                         **{"model.base_adapter": mode, "data.max_length": 400})
        assert config.template == "vicuna_v1"  # recorded by the export
        if (mode, method) == ("continue", "lora"):  # the run starts from the export's trained adapter, not afresh
            from safetensors.torch import load_file

            from vistune.train.run.build import build_model

            saved = load_file(str(base / "adapter" / "adapter_model.safetensors"))
            state = build_model(config)[0].state_dict()
            b_keys = [k for k in saved if "lora_B" in k]
            assert b_keys and all(torch.equal(state[k.replace(".weight", ".default.weight")], saved[k]) for k in b_keys)
            assert any(saved[k].abs().sum() > 0 for k in b_keys)  # trained (a fresh lora_B is zero)
        run = tmp_path / f"run-{mode}-{method}"
        config.output_dir = str(run)
        train(config)
        assert _losses(run)[-1] < _losses(run)[0]
        out = export(run, tmp_path / f"export-{mode}-{method}", mode="merged", dtype="float32")
        _generate_plain(out)


def test_base_with_parts_is_a_config_error(zoo, shapes, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vistune.cli", "train", "configs/tiny/instruct_lora.yaml", f"model.base={zoo.llava_hf()}",
         f"data.path={shapes / 'small.json'}", "--dry-run"], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "model.base" in result.stderr and "model.preset" in result.stderr
