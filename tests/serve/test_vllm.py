"""vLLM serves vistune's exports: merged, and base+lora through a LoRA request, with the answers vistune gives.

One vLLM process (two engines, one after the other) answers the held-out questions through its chat path with the
export's own chat template, as `vllm serve` does; the answers must equal `vistune eval run`'s greedy answers.
A LLaVA-NeXT export is served too. OneVision loads and answers in vLLM's CPU build by hand (docs/deploy.md), but
vistune's OneVision needs torchvision, which .venv (CPU torch) lacks, so it is not built here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.serve.conftest import N_QUESTIONS, vistune_answers, vllm_env

DRIVER = Path(__file__).with_name("vllm_answers.py")


@pytest.fixture(scope="module")
def vllm_results(serve_bin, vllm_exports, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("vllm-answers")
    jobs = {"merged": {"model": str(vllm_exports.merged), "lora": None},
            "base+lora": {"model": str(vllm_exports.base_lora), "lora": str(vllm_exports.base_lora / "adapter"),
                          "max_lora_rank": vllm_exports.rank},
            "llava_next": {"model": str(vllm_exports.llava_next), "lora": None},
            "rl merged": {"model": str(vllm_exports.rl_merged), "lora": None},
            "rl base+lora": {"model": str(vllm_exports.rl_base_lora), "lora": str(vllm_exports.rl_base_lora / "adapter"),
                             "max_lora_rank": json.loads((vllm_exports.rl_base_lora / "adapter" /
                                                          "adapter_config.json").read_text())["r"]}}
    for job in jobs.values():
        job.update(items=vllm_exports.items, max_tokens=16)
    (tmp / "jobs.json").write_text(json.dumps(list(jobs.values())))
    proc = subprocess.run([str(serve_bin / "python"), str(DRIVER), str(tmp / "jobs.json"), str(tmp / "out.json")],
                          env=vllm_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(zip(jobs, json.loads((tmp / "out.json").read_text()), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["merged", "base+lora", "rl merged", "rl base+lora"])
def test_vllm_answers_equal_vistunes(mode, vllm_results, vllm_exports):
    """Instruct (LoRA) and rl (GRPO, LoRA) exports alike."""
    result = vllm_results[mode]
    assert result["error"] is None, result["error"]
    served = [a["text"].strip() for a in result["answers"]]
    export = {"merged": vllm_exports.merged, "base+lora": vllm_exports.base_lora, "rl merged": vllm_exports.rl_merged,
              "rl base+lora": vllm_exports.rl_base_lora}[mode]
    adapter = export / "adapter" if mode.endswith("base+lora") else None
    expected = vistune_answers(export, vllm_exports.items, adapter)
    assert len(served) == N_QUESTIONS
    assert len(set(expected)) >= 2, f"a degenerate model answers everything alike: {expected}"
    assert served == expected


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["", "rl "])
def test_base_lora_answers_as_the_merged_export_token_for_token(stage, vllm_results):
    """The base+lora engine with its LoRA request and the merged engine hold the same trained weights."""
    assert vllm_results[f"{stage}merged"]["answers"], vllm_results[f"{stage}merged"]["error"]
    merged = [a["token_ids"] for a in vllm_results[f"{stage}merged"]["answers"]]
    lora = [a["token_ids"] for a in vllm_results[f"{stage}base+lora"]["answers"]]
    assert merged == lora


@pytest.mark.slow
def test_vllm_serves_a_llava_next_export_as_vistune_answers(vllm_results, vllm_exports):
    """The AnyRes export (tower, projector and image_newline under hub names) loads in vLLM, which answers as
    vistune does. Twenty steps leave this model near-degenerate: the check is the loading and the agreement."""
    result = vllm_results["llava_next"]
    assert result["error"] is None, result["error"]
    assert [a["text"].strip() for a in result["answers"]] == vistune_answers(vllm_exports.llava_next,
                                                                              vllm_exports.items)
