"""An intermediate checkpoint of a tiny LoRA run is self-contained and is a model directory like any other:
`load_trained` finds it by its contents (renamed: identical logits to the run at that step), names a corrupted
file, and `vistune chat`, `vistune eval run` and `vistune export` accept it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import TrainerCallback

from tests.train.conftest import TINY, tiny_overrides
from tests.train.helpers import fixed_batch, logits
from vistune.cli import main
from vistune.model import load_trained
from vistune.model.checkpoints.manifest import ManifestError
from vistune.train.run.config import load_config
from vistune.train.stages.engine import train


class LogitsAt(TrainerCallback):
    """The in-memory model's logits on a fixed batch right after optimizer step `step` (before its save)."""

    def __init__(self, step: int, batch: dict):
        self.step, self.batch, self.logits = step, batch, None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            self.logits = logits(model, self.batch)
            model.train()


@pytest.fixture(scope="module")
def run(shapes, tmp_path_factory):
    from transformers import set_seed

    from vistune.train.run.build import build_model

    out = tmp_path_factory.mktemp("ckpt") / "run"
    config = load_config(TINY / "instruct_lora.yaml", tiny_overrides(shapes, out, **{
        "model.projector": "null", "optim.max_steps": 4, "save_steps": 2, "save_total_limit": 3}))
    set_seed(config.seed)
    batch = fixed_batch(config, *reversed(build_model(config)))  # processor, model
    batch.pop("labels")
    at2 = LogitsAt(2, batch)
    train(config, callbacks=[at2])
    assert at2.logits is not None
    return out, batch, at2.logits


def test_an_intermediate_checkpoint_holds_everything(run):
    out, _, _ = run
    ckpt = out / "checkpoint-2"
    names = {p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file()}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "projector.safetensors",
            "config.yaml", "base.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
            "trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth", "manifest.json"} <= names
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    assert manifest["vistune_version"] and manifest["step"] == 2
    base = manifest["base"]
    assert base == json.loads((ckpt / "base.json").read_text())
    assert base["vision_sha256"] and base["llm_sha256"] and base["weights"] == "adapter"
    assert "max_steps: 4" in (ckpt / "config.yaml").read_text()  # the resolved config, overrides applied


def test_a_renamed_checkpoint_gives_the_logits_of_its_step(run, tmp_path):
    out, batch, expected = run
    renamed = tmp_path / "whatever I like"
    shutil.copytree(out / "checkpoint-2", renamed)
    model, _, template = load_trained(renamed)
    assert template == "vicuna_v1"
    torch.testing.assert_close(logits(model, batch), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("victim", ["projector.safetensors", "adapter/adapter_model.safetensors"])
def test_a_corrupted_file_is_named(victim, run, tmp_path):
    out, _, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out / "checkpoint-2", copy)
    data = bytearray((copy / victim).read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    (copy / victim).write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=rf"{victim} \(sha256 mismatch\)"):
        load_trained(copy)


def test_a_corrupted_checkpoint_is_a_clear_cli_error(run, tmp_path, capsys):
    from vistune.cli import main

    out, _, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out / "checkpoint-2", copy)
    (copy / "projector.safetensors").write_bytes(b"not the saved bytes")
    assert main(["export", "--run", str(copy), "--out", str(tmp_path / "export")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "projector.safetensors" in err and "Traceback" not in err


def test_chat_eval_and_export_accept_a_checkpoint(run, shapes, tmp_path, capsys):
    out, batch, expected = run
    ckpt = out / "checkpoint-2"
    image = next((shapes / "images").iterdir())
    assert main(["chat", "--model", str(ckpt), "--image", str(image), "--prompt", "What shape is shown?",
                 "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.strip()

    evals = tmp_path / "eval"
    assert main(["eval", "run", "--model", str(ckpt), "--benchmark", "shapes", "--data", str(shapes / "heldout.json"),
                 "--out", str(evals), "--limit", "3", "--batch-size", "3"]) == 0
    assert len((evals / "predictions.jsonl").read_text().splitlines()) == 3

    exported = tmp_path / "export"
    assert main(["export", "--run", str(ckpt), "--out", str(exported), "--dtype", "float32"]) == 0
    model, _, _ = load_trained(exported)
    torch.testing.assert_close(logits(model, batch), expected, rtol=0, atol=1e-4)
