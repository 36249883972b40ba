"""`model.base` on llava-hf's LLaVA-NeXT and OneVision layouts (lora / qlora / full): the run keeps the base's grids,
image_newline, feature layer, select strategy and chat template, and both exports load in plain transformers (a
fresh process) with the trained model's logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.train.conftest import export_logits

KEPT = ("image_grid_pinpoints", "vision_feature_layer", "vision_feature_select_strategy", "image_token_index",
        "vision_aspect_ratio", "model_type")


def _needs_torchvision(name: str) -> None:
    if name == "onevision":
        pytest.importorskip("torchvision", reason="transformers builds LlavaOnevisionProcessor's video part on it")


def _base(zoo, name: str) -> Path:
    return zoo.llava_next_mistral() if name == "next" else zoo.llava_onevision_qwen2()


def _train(base: Path, shapes: Path, out: Path, method: str):
    from vistune.train.run.config import load_config
    from vistune.train.stages.engine import train

    items = {"model.base": str(base), "model.dtype": "float32", "method": method, "data.path": shapes / "small.json",
             "data.image_root": shapes, "data.max_length": 400, "data.num_workers": 0, "lora.r": 4, "lora.alpha": 8,
             "optim.lr": 2e-3, "optim.max_steps": 2, "optim.per_device_batch_size": 2,
             "optim.gradient_checkpointing": False, "optim.bf16": False, "optim.tf32": False, "output_dir": out,
             "save_steps": 0, "seed": 0}
    config = load_config(None, [f"{k}={v}" for k, v in items.items()])
    assert config.template == "auto"  # the base's own chat template
    return train(config)


def test_onevision_base_without_torchvision_is_one_clear_error(tmp_path):
    from vistune.model.anyres import has_torchvision
    from vistune.model.checkpoints.base import BaseError, load_base

    if has_torchvision():
        pytest.skip("torchvision present: the OneVision base loads (test_finetune_anyres_base_and_export)")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_onevision"}))
    with pytest.raises(BaseError, match="needs torchvision"):
        load_base(str(tmp_path))


def test_base_kind_takes_anyres_layouts(zoo):
    from vistune.model.checkpoints.base import base_arch, base_kind

    assert base_kind(str(zoo.llava_next_mistral())) == "llava"
    assert base_arch(str(zoo.llava_next_mistral())) == "llava_next"


def test_next_chat_template_renders_the_published_prompt(zoo):
    """The prompt transformers' convert_llava_next_weights_to_hf.py checks llava-v1.6-mistral against, both through
    the processor and through template 'auto' (what training renders), which also masks the reply."""
    from transformers import AutoProcessor

    from vistune.data_prep import get_template, record_from_messages
    from vistune.model.checkpoints.base import base_tokenizer

    processor = AutoProcessor.from_pretrained(zoo.llava_next_mistral())
    typed = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown in this image?"}]}]
    assert processor.apply_chat_template(typed, tokenize=False) == "[INST] <image>\nWhat is shown in this image? [/INST]"
    record = record_from_messages([{"role": "user", "content": "<image>\nWhat is shown in this image?"},
                                   {"role": "assistant", "content": "a stop sign"}], ["x.png"])
    rendered = get_template("auto").render(record, base_tokenizer(str(zoo.llava_next_mistral())))
    assert rendered.text == "[INST] <image>\nWhat is shown in this image? [/INST] a stop sign</s> "
    (start, end), = rendered.spans
    assert rendered.text[start:end] == " a stop sign</s>"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "method"), [("next", "lora"), ("next", "qlora"), ("next", "full"),
                                              ("onevision", "lora")])
def test_finetune_anyres_base_and_export(zoo, shapes, tmp_path, name, method):
    from transformers import AutoConfig, AutoProcessor

    from vistune.model.checkpoints.load import load_trained
    from vistune.model.compose import llava_of
    from vistune.train.saving.export import export

    _needs_torchvision(name)
    base = _base(zoo, name)
    before = json.loads((base / "config.json").read_text())
    result = _train(base, shapes, tmp_path / "run", method)
    llava = llava_of(result.model)
    assert type(llava).__name__ == {"next": "LlavaNextForConditionalGeneration",
                                    "onevision": "LlavaOnevisionForConditionalGeneration"}[name]
    assert llava.model.image_newline is not None
    if name == "onevision":
        assert llava.config.vision_feature_layer == -1  # OneVision's own, not vistune's composing default -2

    trained, processor, _ = load_trained(tmp_path / "run", merge=True, dequantize=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    text = processor.apply_chat_template([{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "What is shown in this image?"}]}], add_generation_prompt=True,
        tokenize=False)
    batch = dict(processor(images=[image], text=[text], return_tensors="pt"))
    assert int((batch["input_ids"] == before["image_token_index"]).sum()) > 0
    with torch.no_grad():
        expected = trained(**batch).logits.float()
    base_template = AutoProcessor.from_pretrained(base).chat_template
    modes = ("merged", "base+lora") if method != "full" else ("merged",)
    for mode in modes:
        out = export(tmp_path / "run", tmp_path / f"export-{mode}", mode=mode, dtype="float32")
        after = AutoConfig.from_pretrained(out).to_dict()
        assert {k: after.get(k) for k in KEPT} == {k: before.get(k) for k in KEPT}, mode
        assert after["text_config"]["vocab_size"] == before["text_config"]["vocab_size"]
        assert AutoProcessor.from_pretrained(out).chat_template == base_template
        loaded_as = "base+lora" if (out / "adapter").is_dir() else "merged"
        torch.testing.assert_close(export_logits(out, loaded_as, batch, tmp_path), expected, rtol=0,
                                   atol=1e-4 if method == "qlora" else 1e-5)


def test_dry_run_and_plan_read_the_anyres_base(zoo, shapes):
    """`train --dry-run` builds the base in its own class on the meta device; `plan` counts its AnyRes tokens."""
    base = zoo.llava_next_mistral()
    common = ["configs/tiny/instruct_lora.yaml", f"model.base={base}", "model.preset=null", "model.projector=null",
              f"data.path={shapes / 'small.json'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    dry = subprocess.run([sys.executable, "-m", "vistune.cli", "train", *common, "--dry-run"], capture_output=True,
                         text=True, env=env, cwd=Path(__file__).parents[2])
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "from the base's config" in dry.stdout
    plan = subprocess.run([sys.executable, "-m", "vistune.cli", "plan", *common, "--gpu", "h100-80g"],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2])
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "FITS" in plan.stdout


@pytest.mark.slow
def test_llava_hf_exports_for_serving_checks(zoo, shapes):
    """The zoo's llava-hf exports (what serving checks such as vLLM load): each a loadable HF directory, the
    base+lora one with its adapter beside the base weights, and the base's class kept."""
    from transformers import AutoConfig

    exports = zoo.llava_hf_exports(shapes)
    assert {"llava-1.5-7b-hf", "llava-v1.6-mistral-7b-hf"} <= set(exports)
    for name, dirs in exports.items():
        base_type = AutoConfig.from_pretrained(zoo.llava_hf_bases()[name]).model_type
        for mode, out in dirs.items():
            assert AutoConfig.from_pretrained(out).model_type == base_type, (name, mode)
            assert (out / "adapter" / "adapter_config.json").is_file() == (mode == "base+lora"), (name, mode)
