"""LLaVA-1.5's recipe on parts laid out as the real ones ship: Vicuna (sampling flags without do_sample) or Qwen2 (an
embedding larger than its tokenizer, specials at 151643+) with the original CLIP (old-style config and preprocessor
files). Stage 1, stage 2, both exports; every export loads in plain transformers (a fresh process, no vistune) with
the trained model's logits, carries a valid generation config, and has vocab_size == its embedding rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.train.conftest import export_logits

LLMS = {"vicuna": "vicuna_v1", "qwen2": "auto"}  # zoo entry -> conversation template


def _train(stage_items: dict, shapes: Path, out: Path) -> None:
    from vistune.train.run.config import load_config
    from vistune.train.stages.engine import train

    items = {"model.dtype": "float32", "model.allow_pickle": True, "data.image_root": str(shapes),
             "data.max_length": 160, "data.num_workers": 0, "optim.max_steps": 2, "optim.per_device_batch_size": 2,
             "optim.gradient_checkpointing": False, "optim.bf16": False, "optim.tf32": False, "lora.r": 4,
             "lora.alpha": 8, "output_dir": str(out), "save_steps": 0, "seed": 0, **stage_items}
    assert train(load_config(None, [f"{k}={v}" for k, v in items.items()])).global_step == 2


def _embedding_rows(export: Path) -> int:
    from safetensors import safe_open

    index = export / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else [
        "model.safetensors"]
    for name in files:
        with safe_open(str(export / name), "pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if key.endswith("embed_tokens.weight"):
                    return f.get_slice(key).get_shape()[0]
    raise AssertionError(f"{export}: no embed_tokens weight")


@pytest.mark.slow
@pytest.mark.parametrize(("llm", "method"), [("qwen2", "lora"), ("qwen2", "qlora"), ("vicuna", "lora"),
                                             ("vicuna", "full")])
def test_stage1_stage2_exports_load_in_plain_transformers(zoo, shapes, tmp_path, llm, method):
    from transformers import AutoConfig, GenerationConfig

    from vistune.model.checkpoints.load import load_trained
    from vistune.train.saving.export import export

    parts = {"model.vision": zoo.clip(), "model.llm": getattr(zoo, llm)()}
    _train({**parts, "stage": "align", "data.path": shapes / "align.json", "data.template": "plain"}, shapes,
           tmp_path / "align")
    _train({**parts, "stage": "instruct", "method": method, "data.path": shapes / "small.json",
            "data.template": LLMS[llm], "model.projector": tmp_path / "align" / "projector.safetensors"}, shapes,
           tmp_path / "instruct")

    trained, processor, _ = load_trained(tmp_path / "instruct", merge=True)  # (QLoRA: on its dequantised base)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    batch = dict(processor(images=[image], text=["<image>\nWhat is the colour of the shape?"], return_tensors="pt"))
    with torch.no_grad():
        expected = trained(**batch).logits.float()
    tokens = len(processor.tokenizer)
    for mode in ("merged", "base+lora"):
        out = export(tmp_path / "instruct", tmp_path / f"export-{mode}", mode=mode, dtype="float32")
        config = AutoConfig.from_pretrained(out)
        rows = _embedding_rows(out)
        assert config.text_config.vocab_size == rows >= tokens, (mode, config.text_config.vocab_size, rows, tokens)
        if llm == "qwen2":  # the checkpoint's spare pad rows are kept: <image> took id 151646 inside them
            assert rows == 152064 and config.image_token_index == 151646
        generation = GenerationConfig.from_pretrained(out)
        generation.validate(strict=True)  # what save_pretrained demands of a changed config
        assert generation.temperature is None or generation.do_sample  # Vicuna's flags unset, not left dangling
        assert (out / "adapter").is_dir() == (mode == "base+lora" and method != "full")
        loaded_as = "base+lora" if (out / "adapter").is_dir() else "merged"  # a full run has no adapter to keep apart
        torch.testing.assert_close(export_logits(out, loaded_as, batch, tmp_path), expected, rtol=0,
                                   atol=1e-4 if method == "qlora" else 1e-5)
