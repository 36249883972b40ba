"""The main job, shortened: `vistune quickstart --fast` runs every phase and writes every artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PHASES = ("data", "pretrain_clip", "pretrain_llm", "align", "eval_align", "instruct", "eval_instruct", "export", "demo")
TYPES = ("colour", "count", "position", "shape")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    env = {**os.environ, "VISTUNE_CACHE": str(out / "cache")}
    proc = subprocess.run([sys.executable, "-m", "vistune.cli", "quickstart", "--fast", "--rl", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.slow
def test_summary_has_every_field(quickstart):
    out, _ = quickstart
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preset"] == "tiny" and summary["fast"] is True
    for stage in ("after_align", "after_instruct"):
        acc = summary["accuracy"][stage]
        assert set(acc) == {*TYPES, "overall"}
        assert all(0.0 <= v <= 1.0 for v in acc.values())
    chance = summary["chance"]
    assert set(chance) == {*TYPES, "overall"}
    assert all(0.0 < v <= 1.0 for v in chance.values())  # 1 / distinct gold answers of the type
    assert summary["questions"] > 0
    assert set(PHASES) <= set(summary["wall_seconds"]) and summary["wall_seconds"]["total"] > 0
    by_step = summary["accuracy_by_step"]["instruct"]  # logged by the eval: block inside `vistune train`
    assert by_step["step"] == [5, 10] and set(by_step) == {"step", *TYPES, "overall"}
    assert {k: v[-1] for k, v in by_step.items() if k != "step"} == summary["accuracy"]["after_instruct"]
    demo = summary["demo"]
    assert demo["question"] and demo["expected"] and "answer" in demo and demo["command"].startswith("vistune chat")


@pytest.mark.slow
def test_every_artifact_exists_and_loads_with_plain_transformers(quickstart):
    out, stdout = quickstart
    summary = json.loads((out / "summary.json").read_text())
    art = summary["artifacts"]
    for key in ("data", "vision", "llm", "align_run", "instruct_run", "eval_align", "eval_instruct", "export",
                "report", "summary"):
        assert os.path.exists(art[key]), key
    for plot in ("loss_pretrain_clip", "loss_pretrain_llm", "loss_align", "loss_instruct", "loss_curves", "accuracy",
                 "accuracy_steps"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000, plot
    assert (out / "runs" / "align" / "projector.safetensors").exists()
    assert (out / "runs" / "instruct" / "adapter" / "adapter_config.json").exists()
    for stage in ("align", "instruct"):
        metrics = json.loads((out / "eval" / stage / "metrics.json").read_text())
        lines = (out / "eval" / stage / "predictions.jsonl").read_text().splitlines()
        assert metrics["answered"] == metrics["questions"] == len(lines) == summary["questions"]
    report = (out / "report.md").read_text()
    assert "![loss_curves](plots/loss_curves.png)" in report and "![accuracy](plots/accuracy.png)" in report
    assert "![accuracy_steps](plots/accuracy_steps.png)" in report
    assert "question type" in stdout and "after_instruct" in stdout  # the closing table
    code = (
        "import sys, torch; from transformers import AutoProcessor, LlavaForConditionalGeneration; "
        f"m = LlavaForConditionalGeneration.from_pretrained({art['export']!r}); "
        f"p = AutoProcessor.from_pretrained({art['export']!r}); "
        "assert 'vistune' not in sys.modules; print(type(m).__name__)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0 and "LlavaForConditionalGeneration" in loaded.stdout, loaded.stderr[-2000:]


@pytest.mark.slow
def test_rl_reports_heldout_accuracy_before_and_after_per_type(quickstart):
    """--rl: stage rl from the stage-2 run; held-out accuracy per type before / after it in summary.json, the
    closing table and plots/rl.png; the before column is the stage-2 model's own accuracy on those questions."""
    out, stdout = quickstart
    summary = json.loads((out / "summary.json").read_text())
    rl = summary["rl"]
    assert set(rl["accuracy_before"]) == set(rl["accuracy_after"]) == {*TYPES, "overall"}
    assert rl["heldout_questions"] == 40 and {"rl_data", "eval_rl_before", "rl", "eval_rl_after"} <= set(
        summary["wall_seconds"])
    before = json.loads((out / "eval" / "rl_before" / "metrics.json").read_text())["metrics"]
    assert rl["accuracy_before"]["overall"] == round(before["accuracy"] / 100, 4)
    log = [json.loads(line) for line in (out / "runs" / "rl" / "log.jsonl").read_text().splitlines()]
    assert len(log) >= 1 and all("rewards/exact/mean" in e and "completions/mean_length" in e for e in log)
    assert "before rl" in stdout and (out / "plots" / "rl.png").stat().st_size > 1000
