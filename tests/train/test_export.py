"""Export round trip: both modes load in a fresh process with transformers / PEFT alone, logits within 1e-4."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.conftest import TINY, assert_export_logits, tiny_overrides
from tests.train.helpers import assert_hub_layout, fixed_batch, logits
from vistune.model import load_trained
from vistune.train.run.config import load_config
from vistune.train.stages.engine import train


@pytest.fixture(scope="module")
def lora_run(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora-run")
    config = load_config(TINY / "instruct_lora.yaml", tiny_overrides(
        shapes, out, **{"model.projector": "null", "optim.max_steps": 4, "save_steps": 0}))
    result = train(config)
    batch = fixed_batch(config, *reversed(load_trained(out)[:2]))  # processor, model
    batch.pop("labels")
    return result, batch


@pytest.mark.parametrize("mode", ["merged", "base+lora"])
def test_export_round_trip_in_a_fresh_process(mode, lora_run, tmp_path):
    from vistune.cli import main

    result, batch = lora_run
    expected = logits(result.model, batch)  # the trained base + projector + adapter, as in memory
    out = tmp_path / "export"
    assert main(["export", "--run", str(result.output_dir), "--out", str(out), "--mode", mode,
                 "--dtype", "float32"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "README.md"} <= names
    assert ("adapter" in names) == (mode == "base+lora")
    if mode == "base+lora":
        cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
        assert not cfg.get("modules_to_save")
    readme = (out / "README.md").read_text()
    assert "LlavaForConditionalGeneration.from_pretrained" in readme and "vllm serve" in readme
    assert "## Verified" in readme and "vLLM 0.32.0" in readme
    # the tiny Llama's embeddings are untied: lm_head is written under its hub name
    assert assert_hub_layout(out) == {"language_model.model.", "language_model.lm_head.", "vision_tower.vision_model.",
                                      "multi_modal_projector."}

    assert_export_logits(out, mode, batch, expected, tmp_path, atol=1e-4)


def test_export_refuses_a_non_empty_target(lora_run, tmp_path):
    from vistune.train.saving.export import export

    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        export(lora_run[0].output_dir, tmp_path)


def test_qlora_exports_onto_its_dequantised_base(shapes, tmp_path):
    from transformers import LlavaForConditionalGeneration

    from vistune.train.saving.export import export

    run = tmp_path / "qlora"
    config = load_config(TINY / "instruct_qlora.yaml", tiny_overrides(
        shapes, run, **{"model.projector": "null", "optim.max_steps": 3, "save_steps": 0}))
    train(config)
    trained, processor, _ = load_trained(run)  # the 4-bit base + adapter, as trained
    batch = fixed_batch(config, processor, trained)
    batch.pop("labels")
    export(run, tmp_path / "merged", mode="merged", dtype="float32")
    assert "quantization_config" not in json.loads((tmp_path / "merged" / "config.json").read_text())["text_config"]
    assert_hub_layout(tmp_path / "merged")
    merged = LlavaForConditionalGeneration.from_pretrained(str(tmp_path / "merged"), dtype=torch.float32)
    torch.testing.assert_close(logits(merged, batch), logits(trained, batch), rtol=0, atol=1e-4)


def test_source_only_config_keys_are_dropped(tmp_path):
    """A GGUF-sourced LLM's `quantization_config` (weights dequantised on load) never reaches an export's config."""
    from vistune.train.saving.hub_layout import clean_config

    gguf = {"quant_method": "gguf", "gguf_file": "smollm2.gguf"}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": {
        "model_type": "llama", "quantization_config": gguf, "hidden_size": 576}, "vision_config": {"hidden_size": 64}}))
    assert clean_config(tmp_path) == ["text_config.quantization_config"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["text_config"] == {"model_type": "llama", "hidden_size": 576}


def test_hub_names_keep_hub_keys_and_move_the_in_memory_ones():
    from vistune.train.saving.hub_layout import hub_name

    assert hub_name("vision_tower.embeddings.patch_embedding.weight") == \
        "vision_tower.vision_model.embeddings.patch_embedding.weight"
    assert hub_name("vision_tower.vision_model.post_layernorm.bias") == "vision_tower.vision_model.post_layernorm.bias"
    for key in ("language_model.model.norm.weight", "language_model.lm_head.weight", "image_newline",
                "multi_modal_projector.linear_1.weight"):
        assert hub_name(key) == key
    # a model loaded from weights in transformers 5's in-memory names (an imported LLaVA) is saved under them
    assert hub_name("model.language_model.layers.0.mlp.up_proj.weight") == "language_model.model.layers.0.mlp.up_proj.weight"
    assert hub_name("lm_head.weight") == "language_model.lm_head.weight"
    assert hub_name("model.vision_tower.embeddings.class_embedding") == "vision_tower.vision_model.embeddings.class_embedding"
    assert hub_name("model.multi_modal_projector.linear_2.bias") == "multi_modal_projector.linear_2.bias"
    assert hub_name("model.image_newline") == "image_newline"
