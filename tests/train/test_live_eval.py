"""Evaluation while training (`eval:` in the run config): metrics land in log.jsonl at the requested steps, and the
numbers after the last step equal a separate `vistune eval run` on the saved model, answer for answer. The 2-process
runs (DeepSpeed ZeRO-2: rank 0 generates alone; ZeRO-3: every rank generates in lockstep) must not hang and must log
the same way."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.train.conftest import REPO, TINY, subprocess_env, tiny_overrides
from vistune.cli import main as cli
from vistune.train.run.config import ConfigError, load_config
from vistune.train.stages.engine import train


def _eval_block(shapes, every: int, limit: int) -> str:
    entries = [{"benchmark": "shapes", "data": str(shapes / "heldout.json"), "every": every, "limit": limit,
                "max_new_tokens": 4, "batch_size": 4},
               {"benchmark": "loss", "data": str(shapes / "small.json"), "limit": 6, "name": "heldout"}]
    return "eval=" + json.dumps(entries)


def _eval_lines(out) -> list[dict]:
    rows = map(json.loads, (out / "log.jsonl").read_text().splitlines())
    return [r for r in rows if any(k.startswith("eval/") for k in r)]


def _separate_eval_run(out, shapes, tmp_path, limit) -> tuple[dict, dict]:
    """`vistune eval run` on the saved run for both entries: (shapes metrics.json, loss metrics.json)."""
    results = []
    for bench, data, extra in (("shapes", "heldout.json", ["--limit", str(limit), "--max-new-tokens", "4"]),
                               ("loss", "small.json", ["--limit", "6"])):
        dest = tmp_path / f"separate-{bench}"
        assert cli(["eval", "run", "--model", str(out), "--benchmark", bench, "--data", str(shapes / data),
                    "--out", str(dest), "--batch-size", "4", *extra]) == 0
        results.append(json.loads((dest / "metrics.json").read_text()))
    return results[0], results[1]


def _assert_final_equals(out, shapes, tmp_path, step, limit):
    logged = _eval_lines(out)[-1]
    assert logged["step"] == step
    shapes_metrics, loss_metrics = _separate_eval_run(out, shapes, tmp_path, limit)
    for key, value in shapes_metrics["metrics"].items():
        assert logged[f"eval/shapes/{key}"] == pytest.approx(value), key
    assert logged["eval/heldout/loss"] == pytest.approx(loss_metrics["metrics"]["loss"], rel=1e-5)
    in_training = (out / "eval" / "shapes" / f"step-{step}" / "predictions.jsonl").read_text().splitlines()
    separate = (tmp_path / "separate-shapes" / "predictions.jsonl").read_text().splitlines()
    answers = lambda lines: [(r["question_id"], r["prediction"]) for r in map(json.loads, lines)]  # noqa: E731
    assert answers(in_training) == answers(separate) and len(in_training) == limit


def test_eval_block_logs_at_the_requested_steps_and_equals_a_separate_eval_run(shapes, tmp_path):
    out = tmp_path / "run"
    overrides = tiny_overrides(shapes, out, "small.json", **{"model.projector": "null", "optim.max_steps": 5,
                                                             "save_steps": 0, "optim.lr": 1e-3})
    train(load_config(TINY / "instruct_lora.yaml", [*overrides, _eval_block(shapes, every=2, limit=8)]))
    lines = _eval_lines(out)
    shapes_steps = [r["step"] for r in lines if "eval/shapes/accuracy" in r]
    loss_steps = [r["step"] for r in lines if "eval/heldout/perplexity" in r]
    assert shapes_steps == [2, 4, 5] and loss_steps == [5]  # every 2 steps, and after the last one
    assert {"eval/shapes/accuracy/colour", "eval/shapes/chance", "eval/shapes/seconds"} <= set(lines[0])
    losses = [json.loads(r) for r in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in losses if "loss" in r] == [1, 2, 3, 4, 5]  # training lines are untouched
    assert not any("eval" in k for k in json.loads((out / "manifest.json").read_text())["files"])
    _assert_final_equals(out, shapes, tmp_path, step=5, limit=8)


def test_eval_entries_are_checked_when_the_config_loads(shapes, tmp_path):
    base = tiny_overrides(shapes, tmp_path)
    with pytest.raises(ConfigError, match=r"eval\[0\].benchmark: 'shape' .*did you mean 'shapes'"):
        load_config(TINY / "instruct_lora.yaml", [*base, 'eval=[{benchmark: shape, data: x}]'])
    with pytest.raises(ConfigError, match=r"eval\[0\].data: .*missing.json' does not exist"):
        load_config(TINY / "instruct_lora.yaml", [*base, f'eval=[{{benchmark: shapes, data: {tmp_path}/missing.json}}]'])
    with pytest.raises(ConfigError, match="unknown config key 'eval.evry'"):
        load_config(TINY / "instruct_lora.yaml", [*base, "eval=[{benchmark: shapes, evry: 5}]"])


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_two_process_deepspeed_logs_eval_and_equals_a_separate_eval_run(zero, shapes, tmp_path):
    out = tmp_path / "run"
    overrides = tiny_overrides(shapes, out, "small.json", **{
        "model.projector": "null", "optim.max_steps": 2, "save_steps": 0, "optim.per_device_batch_size": 2,
        "optim.lr": 1e-3, "deepspeed": REPO / "configs" / "deepspeed" / f"{zero}.json"})
    cmd = ["deepspeed", "--num_gpus", "2", "--no_local_rank", "--module", "vistune.cli", "train",
           str(TINY / "instruct_lora.yaml"), *overrides, _eval_block(shapes, every=1, limit=4)]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert [r["step"] for r in _eval_lines(out) if "eval/shapes/accuracy" in r] == [1, 2]
    _assert_final_equals(out, shapes, tmp_path, step=2, limit=4)
