"""Two-process stage-2 LoRA under DeepSpeed ZeRO-2 / ZeRO-3 (CPU, gloo), launched by `deepspeed` and by
`accelerate launch`: the saved adapter and projector equal the single-process run's in keys and shapes, none empty,
and the logged losses equal the single-process run's (same samples per step) within 1e-4."""

from __future__ import annotations

import json
import subprocess

import pytest
from safetensors.torch import load_file

from tests.train.conftest import REPO, TINY, subprocess_env, tiny_overrides
from vistune.train.config import load_config
from vistune.train.engine import train

LAUNCHERS = {
    "deepspeed": ["deepspeed", "--num_gpus", "2", "--no_local_rank", "--module", "vistune.cli"],
    "accelerate": ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "vistune.cli"],
}
# one sample per process per step, four steps: at step 4 the text-only record lands on one rank while the other
# has an image (ranks must still run the same collectives); no dropout, so the losses must equal one process's
RUN = {"model.projector": "null", "optim.max_steps": 4, "save_steps": 2, "optim.per_device_batch_size": 1,
       "optim.grad_accum": 1, "lora.dropout": 0}


def _losses(out):
    return {e["step"]: e["loss"] for e in map(json.loads, (out / "log.jsonl").read_text().splitlines())}


def _shapes(path):
    return {k: tuple(v.shape) for k, v in load_file(str(path)).items()}


@pytest.fixture(scope="module")
def single(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    train(load_config(TINY / "instruct_lora.yaml", tiny_overrides(shapes, out, **{**RUN, "optim.per_device_batch_size": 2})))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("launcher, zero", [("deepspeed", "zero2"), ("deepspeed", "zero3"), ("accelerate", "zero3")])
def test_two_process_lora_saves_the_same_adapter(launcher, zero, shapes, single, tmp_path):
    out = tmp_path / "run"
    cmd = [*LAUNCHERS[launcher], "train", str(TINY / "instruct_lora.yaml"),
           *tiny_overrides(shapes, out, **RUN, deepspeed=REPO / "configs" / "deepspeed" / f"{zero}.json")]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for where in (out, out / "checkpoint-4"):
        adapter = _shapes(where / "adapter" / "adapter_model.safetensors")
        assert adapter == _shapes(single / "adapter" / "adapter_model.safetensors")
        assert all(0 not in shape for shape in adapter.values())
        assert _shapes(where / "projector.safetensors") == _shapes(single / "projector.safetensors")
        assert not json.loads((where / "adapter" / "adapter_config.json").read_text()).get("modules_to_save")
    assert (out / "checkpoint-4" / "manifest.json").is_file()
    losses = _losses(out)
    assert sorted(losses) == [1, 2, 3, 4]
    for step, value in _losses(single).items():
        assert losses[step] == pytest.approx(value, abs=1e-4), step
