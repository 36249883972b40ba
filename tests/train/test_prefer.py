"""Stage prefer on the tiny model: DPO from a stage-2 run (LoRA) and from its export (QLoRA); the reference is the
start network with the adapter disabled; rewards in log.jsonl; exactly the bad pairs skipped; both export modes
load in a fresh process with transformers / PEFT alone; two ZeRO-2 processes log the one-process losses; the
reference-free ORPO and SimPO (TRL's experimental trainers) learn the pairs, log the same metrics and export."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from tests.data_prep.test_preference import bad_rows
from tests.train.conftest import REPO, TINY, assert_export_logits, subprocess_env, tiny_overrides
from vistune.model import load_trained
from vistune.train.run.config import load_config
from vistune.train.stages.engine import train

PREFER = {"optim.max_steps": 3, "save_steps": 2, "optim.per_device_batch_size": 4}


@pytest.fixture(scope="module")
def pairs(shapes):
    """prefer.json (16 good pairs) and mixed.json: 8 good pairs and one of each bad kind."""
    from vistune.data_prep.synth import synthesize_preferences

    paths = synthesize_preferences(shapes, n=16, n_heldout=4, seed=3)
    good = json.loads(paths["prefer"].read_text())
    image = good[0]["image"]
    bad = {problem: {**row, "image": image if problem != "image_tag_mismatch" else [image, image]}
           for problem, row in bad_rows("word " * 300).items()}
    (shapes / "prefer_mixed.json").write_text(json.dumps(good[:8] + list(bad.values())))
    return {"good": "prefer.json", "mixed": "prefer_mixed.json", "bad": {r["id"]: p for p, r in bad.items()}}


def _batch(run_config, processor, model) -> dict:
    from vistune.data_prep import SkipLog
    from vistune.train.stages.prefer import build_dataset

    dataset, collator = build_dataset(run_config, processor, model, SkipLog())
    batch = collator([dataset[i] for i in range(4)])
    return {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}


@torch.no_grad()
def _logits(model, batch):
    from vistune.model.checkpoints.load import keep_4bit_training_kernel

    model.eval()
    keep_4bit_training_kernel(model)
    return model(**batch).logits.float()


@pytest.fixture(scope="module")
def lora_prefer(shapes, pairs, instruct_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("prefer-lora")
    config = load_config(TINY / "prefer_lora.yaml", tiny_overrides(
        shapes, out, pairs["mixed"], **PREFER, **{"preference.start": instruct_run}))
    return config, train(config)


def test_lora_prefer_logs_rewards_and_skips_exactly_the_bad_pairs(lora_prefer, pairs, instruct_run):
    config, result = lora_prefer
    assert result.status == "done" and result.global_step == 3
    lines = [json.loads(line) for line in (result.output_dir / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == [1, 2, 3]
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert all(key in e for e in lines), key
    assert lines[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # step 1: policy == reference
    skipped = {s["id"]: s["problem"] for s in map(json.loads, (result.output_dir / "skipped.jsonl").read_text()
                                                           .splitlines())}
    assert skipped == pairs["bad"]
    base = json.loads((result.output_dir / "base.json").read_text())
    assert base["stage"] == "prefer" and base["start"] == str(instruct_run.resolve()) and base["weights"] == "adapter"
    assert (result.output_dir / "checkpoint-2" / "manifest.json").is_file()


def test_reference_is_the_start_model_with_the_adapter_disabled(lora_prefer, instruct_run):
    config, result = lora_prefer
    start, processor, _ = load_trained(instruct_run, merge=True)
    batch = _batch(config, processor, start)
    with result.model.disable_adapter():
        reference = _logits(result.model, batch)
    torch.testing.assert_close(reference, _logits(start, batch), rtol=0, atol=1e-5)
    assert not torch.allclose(_logits(result.model, batch), reference, atol=1e-4)  # the adapter learned something


def test_prefer_resumes_from_its_checkpoint(lora_prefer, shapes, pairs, instruct_run, tmp_path):
    import shutil

    config, result = lora_prefer
    out = tmp_path / "resumed"
    shutil.copytree(result.output_dir / "checkpoint-2", out / "checkpoint-2")
    resumed = train(load_config(TINY / "prefer_lora.yaml", tiny_overrides(
        shapes, out, pairs["mixed"], **PREFER, **{"preference.start": instruct_run})))
    assert resumed.global_step == 3
    assert _losses(out)[3] == pytest.approx(_losses(result.output_dir)[3], abs=1e-5)


def test_full_prefer_trains_against_a_frozen_copy_of_the_start(shapes, pairs, instruct_run, tmp_path):
    out = tmp_path / "full"
    result = train(load_config(TINY / "prefer_full.yaml", tiny_overrides(
        shapes, out, pairs["good"], **{**PREFER, "save_steps": 0, "preference.start": instruct_run})))
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert result.status == "done" and lines[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert lines[2]["rewards/margins"] != 0.0  # step 1 is warm-up (lr 0); then the policy leaves the reference
    assert (out / "model.safetensors").is_file() and json.loads((out / "base.json").read_text())["weights"] == "full"


def _export_round_trip(run: Path, mode: str, batch: dict, expected: torch.Tensor, tmp_path: Path) -> None:
    from vistune.cli import main

    out = tmp_path / f"export-{mode.replace('+', '-')}"
    assert main(["export", "--run", str(run), "--out", str(out), "--mode", mode, "--dtype", "float32"]) == 0
    assert (out / "adapter").is_dir() == (mode == "base+lora")
    assert_export_logits(out, mode, batch, expected, tmp_path, atol=1e-4)


@pytest.mark.parametrize("mode", ["merged", "base+lora"])
def test_lora_prefer_exports_load_without_vistune(mode, lora_prefer, tmp_path):
    config, result = lora_prefer
    model, processor, _ = load_trained(result.output_dir)
    batch = _batch(config, processor, model)
    _export_round_trip(result.output_dir, mode, batch, _logits(result.model, batch), tmp_path)


def test_qlora_prefer_from_an_export_exports_both_modes(shapes, pairs, instruct_run, tmp_path):
    from vistune.train.saving.export import export

    start = export(instruct_run, tmp_path / "start", mode="merged", dtype="float32")
    out = tmp_path / "run"
    config = load_config(TINY / "prefer_qlora.yaml", tiny_overrides(
        shapes, out, pairs["good"], **{**PREFER, "optim.max_steps": 2, "save_steps": 0, "preference.start": start}))
    result = train(config)
    assert json.loads((out / "base.json").read_text())["load_in_4bit"] is True
    model, processor, _ = load_trained(out, dequantize=True)  # the dequantised 4-bit base + adapter: what exports hold
    batch = _batch(config, processor, model)
    expected = _logits(model, batch)
    assert result.status == "done"
    for mode in ("merged", "base+lora"):
        _export_round_trip(out, mode, batch, expected, tmp_path / mode.replace("+", "-"))


@pytest.fixture(scope="module")
def ranked(shapes, pairs):
    """The good pairs with one fixed order of the replies (the alphabetically first one is chosen): a preference
    the tiny LLM can learn from text alone, where the shapes pairs need eyes that a 2-step stage 2 has not got."""
    rows = json.loads((shapes / pairs["good"]).read_text())
    for row in rows:
        row["chosen"], row["rejected"] = sorted((row["chosen"], row["rejected"]))
    (shapes / "prefer_ranked.json").write_text(json.dumps(rows))
    return "prefer_ranked.json"


@pytest.mark.parametrize("loss", ["orpo", "simpo"])
def test_reference_free_losses_learn_the_pairs_and_export(loss, shapes, ranked, instruct_run, tmp_path):
    """16 training pairs, 8 epochs: the loss falls, the preference accuracy on those pairs (TRL's
    rewards/accuracies: mean token log-prob of chosen > rejected) rises to 1, TRL's rewards / margins reach
    log.jsonl, and both export modes load without vistune."""
    out = tmp_path / loss
    config = load_config(TINY / "prefer_lora.yaml", tiny_overrides(shapes, out, ranked, **{
        "preference.loss": loss, "preference.beta": 2.0, "preference.sft_weight": 0, "optim.lr": 1e-2,
        "optim.max_steps": 32, "save_steps": 0, "optim.per_device_batch_size": 4, "preference.start": instruct_run}))
    result = train(config)
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert result.status == "done" and [e["step"] for e in lines] == list(range(1, 33))
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "nll_loss"):
        assert all(key in e for e in lines), key

    def epoch(key: str, first: int) -> float:  # 4 steps x 4 pairs = every training pair once
        return sum(e[key] for e in lines[first:first + 4]) / 4

    assert epoch("loss", 28) < epoch("loss", 0)
    assert epoch("rewards/accuracies", 0) < 0.75 and epoch("rewards/accuracies", 28) == 1.0
    assert json.loads((out / "base.json").read_text())["stage"] == "prefer"
    model, processor, _ = load_trained(out)
    batch = _batch(config, processor, model)
    for mode in ("merged", "base+lora"):
        _export_round_trip(out, mode, batch, _logits(result.model, batch), tmp_path / mode.replace("+", "-"))


def test_orpo_refuses_an_sft_weight():
    from vistune.train.run.config import ConfigError

    with pytest.raises(ConfigError, match="ORPO"):
        load_config(TINY / "prefer_lora.yaml", ["preference.loss=orpo", "preference.sft_weight=1"])


def _losses(out: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in map(json.loads, (out / "log.jsonl").read_text().splitlines())}


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["sigmoid", "orpo"])  # DPOTrainer's forward, and vistune's reference-free one
def test_two_zero2_processes_log_the_one_process_losses(loss, shapes, pairs, instruct_run, tmp_path):
    from tests.train.in_order import use_file_order

    run = {"optim.max_steps": 3, "save_steps": 0, "data.group_by_length": "false", "preference.start": instruct_run,
           "preference.loss": loss, "preference.sft_weight": 0}
    single = tmp_path / "single"
    with pytest.MonkeyPatch.context() as patch:
        use_file_order(patch)
        train(load_config(TINY / "prefer_lora.yaml", tiny_overrides(
            shapes, single, pairs["good"], **run, **{"optim.per_device_batch_size": 4})))
    out = tmp_path / "zero2"
    cmd = ["deepspeed", "--num_gpus", "2", "--no_local_rank", "--module", "tests.train.in_order", "train",
           str(TINY / "prefer_lora.yaml"),
           *tiny_overrides(shapes, out, pairs["good"], **run, **{"optim.per_device_batch_size": 2},
                           deepspeed=REPO / "configs" / "deepspeed" / "zero2.json")]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=480)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    expected, losses = _losses(single), _losses(out)
    assert sorted(losses) == sorted(expected) == [1, 2, 3]
    for step, value in expected.items():
        assert losses[step] == pytest.approx(value, abs=1e-4), step
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
