"""lmms-eval evaluates a vistune export: its `llava_hf` model, through its own CLI, on vistune's local task.

lmms-eval (in .venv-serve, scripts/setup_serve.sh) runs configs/lmms_eval/vistune_heldout on the synthetic held-out
questions the serving model was built with, exactly as docs/eval.md tells users to; its per-sample answers must
equal `vistune eval run`'s greedy answers, and its exact_match vistune's `shapes` accuracy of those answers.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.serve.conftest import N_QUESTIONS, vistune_answers
from tests.train.conftest import REPO, subprocess_env

TASKS = REPO / "configs" / "lmms_eval"


@pytest.fixture(scope="module")
def lmms_eval_run(serve_bin, vllm_exports, tmp_path_factory) -> dict:
    """lmms-eval's CLI on the merged export, run from the data directory (where heldout.json and images/ are)."""
    if not (serve_bin / "lmms-eval").is_file():
        message = "lmms-eval is not in .venv-serve: `bash scripts/setup_serve.sh` installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("lmms-eval")
    env = subprocess_env()
    env.update(OMP_NUM_THREADS="2", HF_DATASETS_CACHE=str(out / "datasets"))
    model_args = f"pretrained={vllm_exports.merged},device=cpu,device_map=cpu,dtype=float32"
    proc = subprocess.run([str(serve_bin / "lmms-eval"), "--model", "llava_hf", "--model_args", model_args,
                           "--include_path", str(TASKS), "--tasks", "vistune_heldout", "--batch_size", "1",
                           "--log_samples", "--output_path", str(out / "results")],
                          cwd=vllm_exports.data, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    samples_file, = (out / "results").rglob("*_samples_vistune_heldout.jsonl")
    results_file, = (out / "results").rglob("*_results.json")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    return {"samples": samples, "results": json.loads(results_file.read_text())["results"]["vistune_heldout"]}


@pytest.mark.slow
def test_lmms_eval_answers_as_vistune_eval_run(lmms_eval_run, vllm_exports):
    served = [s["filtered_resps"].strip() for s in lmms_eval_run["samples"]]
    expected = vistune_answers(vllm_exports.merged, vllm_exports.items)
    assert len(served) == N_QUESTIONS
    assert len(set(expected)) >= 2, f"a degenerate model answers everything alike: {expected}"
    assert served == expected


@pytest.mark.slow
def test_lmms_eval_scores_as_vistunes_shapes_scorer(lmms_eval_run, vllm_exports):
    """The local task reads heldout.json's `answer`s, and its exact_match is vistune's shapes accuracy / 100."""
    from vistune.eval.scorers import score_shapes_rows

    heldout = json.loads((vllm_exports.data / "heldout.json").read_text())
    assert [s["target"] for s in lmms_eval_run["samples"]] == [r["answer"] for r in heldout]
    rows = [{"prediction": s["filtered_resps"], "answer": r["answer"]}
            for s, r in zip(lmms_eval_run["samples"], heldout, strict=True)]
    accuracy = score_shapes_rows(rows)["accuracy"]
    assert 0 < accuracy < 100, f"a check that cannot tell right from wrong: accuracy {accuracy}"
    assert lmms_eval_run["results"]["exact_match,none"] == pytest.approx(accuracy / 100)
