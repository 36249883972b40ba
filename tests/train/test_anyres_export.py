"""LLaVA-NeXT from parts, align -> instruct (LoRA) -> export: the directory loads and generates in plain
transformers (fresh process, no vistune), with logits equal to vistune's in-memory model within 1e-5 (fp32)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.train.conftest import TINY, subprocess_env, tiny_overrides
from tests.train.helpers import assert_hub_layout, fixed_batch, logits
from vistune.model import load_trained
from vistune.train.run.config import load_config
from vistune.train.stages.engine import train

HELPER = Path(__file__).with_name("load_exported.py")
ANYRES = {"model.arch": "llava_next", "data.max_length": 512, "save_steps": 0, "optim.max_steps": 3}


@pytest.fixture(scope="module")
def next_run(shapes, tmp_path_factory):
    align_out = tmp_path_factory.mktemp("next-align")
    train(load_config(TINY / "align.yaml", tiny_overrides(shapes, align_out, "small_align.json", **ANYRES)))
    out = tmp_path_factory.mktemp("next-lora")
    config = load_config(TINY / "instruct_lora.yaml", tiny_overrides(
        shapes, out, **ANYRES, **{"model.projector": str(align_out)}))
    result = train(config)
    batch = fixed_batch(config, *reversed(load_trained(out)[:2]))
    batch.pop("labels")
    return result, batch


def test_align_trains_image_newline_and_saves_it_with_the_projector(next_run):
    from safetensors.torch import load_file

    result, _ = next_run
    saved = load_file(str(Path(result.output_dir) / "projector.safetensors"))
    assert "image_newline" in saved
    torch.testing.assert_close(saved["image_newline"], result.model.get_base_model().model.image_newline.detach())


@pytest.mark.parametrize("mode", ["merged", "base+lora"])
def test_llava_next_export_loads_in_plain_transformers_with_equal_logits(mode, next_run, tmp_path):
    from vistune.train.saving.export import export

    result, batch = next_run
    assert batch["pixel_values"].dim() == 5 and "image_sizes" in batch
    expected = logits(result.model, batch)
    out = export(result.output_dir, tmp_path / "export", mode=mode, dtype="float32")
    assert '"model_type": "llava_next"' in (out / "config.json").read_text()
    assert "LlavaNextForConditionalGeneration.from_pretrained" in (out / "README.md").read_text()
    assert "image_newline" in assert_hub_layout(out)
    torch.save(batch, tmp_path / "batch.pt")
    proc = subprocess.run([sys.executable, str(HELPER), str(out), mode, str(tmp_path / "batch.pt"),
                           str(tmp_path / "logits.pt")], env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
    assert "LlavaNextForConditionalGeneration" in proc.stdout
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=1e-5)
