"""Interrupted runs: kill -9 after a checkpoint, SIGTERM, and a non-finite loss; `resume: auto` continues exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train.conftest import TINY, subprocess_env, tiny_overrides
from vistune.train.run.config import load_config
from vistune.train.stages.engine import TrainingStopped, train

HELPER = Path(__file__).with_name("run_with_signal.py")


def _overrides(shapes, out) -> list[str]:
    # instruct data with a text-only record; LoRA dropout on, so resume must restore the RNG too
    return tiny_overrides(shapes, out, "small.json", **{"optim.max_steps": 8, "save_steps": 2,
                                                          "save_total_limit": 2, "optim.per_device_batch_size": 2,
                                                          "model.projector": "null"})


def _losses(out: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in map(json.loads, (out / "log.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def reference(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    train(load_config(TINY / "instruct_lora.yaml", _overrides(shapes, out)))
    return out


def _run_until_signal(shapes, out, step, sig):
    cmd = [sys.executable, str(HELPER), str(TINY / "instruct_lora.yaml"), str(step), sig, *_overrides(shapes, out)]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)


def test_kill_9_after_a_checkpoint_then_resume_auto_matches(shapes, tmp_path, reference):
    out = tmp_path / "run"
    proc = _run_until_signal(shapes, out, 4, "SIGKILL")
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    # a save that was interrupted: a staged checkpoint and an unmanifested one must never be picked
    (out / ".staging" / "checkpoint-6").mkdir(parents=True)
    (out / "checkpoint-6").mkdir()
    (out / "checkpoint-6" / "trainer_state.json").write_text("{}")

    result = train(load_config(TINY / "instruct_lora.yaml", _overrides(shapes, out)))
    assert result.status == "done" and result.global_step == 8
    ref, got = _losses(reference), _losses(out)
    assert sorted(got) == list(range(1, 9))
    for step in range(5, 9):
        assert got[step] == pytest.approx(ref[step], abs=1e-4), step
    a, b = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (reference, out))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)


def test_sigterm_saves_and_exits_cleanly_then_resumes(shapes, tmp_path, reference):
    out = tmp_path / "run"
    proc = _run_until_signal(shapes, out, 2, "SIGTERM")  # arrives right after checkpoint-2: stops after step 3
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "STATUS interrupted 3" in proc.stdout
    assert (out / "checkpoint-3" / "manifest.json").is_file()
    train(load_config(TINY / "instruct_lora.yaml", _overrides(shapes, out)))
    ref, got = _losses(reference), _losses(out)
    for step in range(1, 9):
        assert got[step] == pytest.approx(ref[step], abs=1e-4), step


def test_non_finite_loss_stops_with_a_message_after_saving_the_last_good_state(shapes, tmp_path):
    out = tmp_path / "run"
    config = load_config(TINY / "instruct_lora.yaml", _overrides(shapes, out) + ["optim.lr=1e30", "optim.max_grad_norm=0"])
    with pytest.raises(TrainingStopped, match=r"loss became (nan|inf).*last good state \(step (\d+)\) is saved"):
        train(config)
    saved = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert saved and (saved[-1] / "manifest.json").is_file()
    weights = load_file(str(saved[-1] / "adapter" / "adapter_model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
