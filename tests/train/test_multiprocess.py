"""Two-process stage-2 LoRA under DeepSpeed ZeRO-2 / ZeRO-3 (CPU, gloo), launched by `deepspeed` and by
`accelerate launch`, on data laid out so the ranks' batches differ in having images: one rank text-only for three
steps while the other has images, mixed batches, two-image records, a step whose every sample is dropped (the
supervision guard must skip it on all ranks together) and a batch with one dropped sample. It must not hang (a
timeout), the saved adapter and projector equal the single-process run's in keys and shapes, none empty, and the
logged losses equal the single-process run's (same samples per step) within 1e-4."""

from __future__ import annotations

import json
import subprocess

import pytest
from safetensors.torch import load_file

from tests.train.conftest import REPO, TINY, subprocess_env, tiny_overrides
from vistune.train.run.config import load_config
from vistune.train.stages.engine import train

LAUNCHERS = {
    "deepspeed": ["deepspeed", "--num_gpus", "2", "--no_local_rank", "--module", "tests.train.in_order"],
    "accelerate": ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tests.train.in_order"],
}
# Records in file order (tests.train.in_order), two per rank per step; T text-only, I one image, M two images,
# X an image that fails to load (the sample is dropped). Rank 0 | rank 1 at each step:
LAYOUT = ["TT", "II",   # 1: rank 0 text-only, rank 1 images
          "TT", "MI",   # 2: rank 0 text-only, rank 1 a two-image record
          "TT", "IT",   # 3: rank 0 text-only, rank 1 mixed
          "XX", "XX",   # 4: no sample left on any rank: skipped everywhere, no update
          "IT", "MM",   # 5: mixed | two two-image records
          "XI", "TT"]   # 6: one dropped sample | text-only
# No dropout, so the losses must equal one process's (batch 4) on the same samples.
RUN = {"model.projector": "null", "optim.max_steps": 6, "save_steps": 3, "optim.per_device_batch_size": 2,
       "optim.grad_accum": 1, "lora.dropout": 0, "data.group_by_length": "false"}


@pytest.fixture(scope="module")
def mixed(shapes):
    """`mixed.json` in `shapes`, following LAYOUT."""
    records = json.loads((shapes / "instruct.json").read_text())
    images = iter([r for r in records if "image" in r])
    texts = [r["conversations"] for r in records if "image" not in r]
    (shapes / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    out = []
    for i, kind in enumerate("".join(LAYOUT)):
        if kind == "T":
            turns = [{"from": "human", "value": f"What is {i} plus one?"}, {"from": "gpt", "value": str(i + 1)}]
            out.append({"id": f"t{i}", "conversations": turns if i % 2 else texts[0]})
        elif kind == "M":
            a, b = next(images), next(images)
            turns = [{"from": "human", "value": "<image>\n<image>\nWhat shape is in the first image?"},
                     {"from": "gpt", "value": "the first one"}]
            out.append({"id": f"m{i}", "image": [a["image"], b["image"]], "conversations": turns})
        else:
            rec = next(images)
            out.append({**rec, "id": f"{kind.lower()}{i}", **({"image": "broken.png"} if kind == "X" else {})})
    (shapes / "mixed.json").write_text(json.dumps(out))
    return "mixed.json"


def _losses(out):
    return {e["step"]: e["loss"] for e in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in e}


def _shapes(path):
    return {k: tuple(v.shape) for k, v in load_file(str(path)).items()}


@pytest.fixture(scope="module")
def single(shapes, mixed, tmp_path_factory):
    from tests.train.in_order import use_file_order

    out = tmp_path_factory.mktemp("single")
    with pytest.MonkeyPatch.context() as patch:
        use_file_order(patch)
        train(load_config(TINY / "instruct_lora.yaml",
                          tiny_overrides(shapes, out, mixed, **{**RUN, "optim.per_device_batch_size": 4})))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("launcher, zero", [("deepspeed", "zero2"), ("deepspeed", "zero3"), ("accelerate", "zero3")])
def test_two_process_lora_saves_the_same_adapter(launcher, zero, shapes, mixed, single, tmp_path):
    out = tmp_path / "run"
    cmd = [*LAUNCHERS[launcher], "train", str(TINY / "instruct_lora.yaml"),
           *tiny_overrides(shapes, out, mixed, **RUN, deepspeed=REPO / "configs" / "deepspeed" / f"{zero}.json")]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for where in (out, out / "checkpoint-6"):
        adapter = _shapes(where / "adapter" / "adapter_model.safetensors")
        assert adapter == _shapes(single / "adapter" / "adapter_model.safetensors")
        assert all(0 not in shape for shape in adapter.values())
        assert _shapes(where / "projector.safetensors") == _shapes(single / "projector.safetensors")
        assert not json.loads((where / "adapter" / "adapter_config.json").read_text()).get("modules_to_save")
    assert (out / "checkpoint-6" / "manifest.json").is_file()
    losses, expected = _losses(out), _losses(single)
    assert sorted(losses) == sorted(expected) == [1, 2, 3, 5, 6]  # step 4 skipped: no loss logged
    assert [e["skipped_steps"] for e in map(json.loads, (out / "log.jsonl").read_text().splitlines())] == [0, 0, 0, 1, 0, 0]
    for step, value in expected.items():
        assert losses[step] == pytest.approx(value, abs=1e-4), step
