"""vLLM serves the zoo's llava-hf entries fine-tuned by vistune: greedy token ids equal transformers' (issue 25).

Each llava-hf layout (LLaVA-1.5, LLaVA-NeXT Mistral; OneVision only where .venv has torchvision) is trained 2 LoRA
steps and exported merged and base+lora (`Zoo.llava_hf_exports`); one vLLM process (tests/serve/vllm_answers.py,
under .venv-serve) answers a few image prompts through its chat path with each export's own chat template, the LoRA
through a LoRA request. Fed the served tokens, transformers (.venv, the same template) must give them the log-
probabilities vLLM reports, and rank each first (up to ties within TOL): the same greedy decoding.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.serve.conftest import require_serve_bin, vllm_env

DRIVER = Path(__file__).parents[1] / "serve" / "vllm_answers.py"
N_PROMPTS, MAX_TOKENS = 4, 8
TOL = 1e-3  # log-probability tolerance: these barely trained models leave near ties between tokens


def prompts(shapes: Path) -> list[dict]:
    records = json.loads((shapes / "small.json").read_text())[:N_PROMPTS]
    return [{"image": str(shapes / r["image"]),
             "question": r["conversations"][0]["value"].replace("<image>", "").strip()} for r in records]


def transformers_logprobs(export: Path, adapter: Path | None, items: list[dict], served: list[list[int]]
                         ) -> list[tuple[list[float], list[float]]]:
    """Per prompt, transformers' log-probabilities of the served tokens (fed back one at a time) and the best
    log-probability at each of those steps, prompted with the export's chat template (its adapter on top)."""
    import torch
    from PIL import Image

    from vistune.eval.loading import load_model

    model, processor, _ = load_model(export, adapter=adapter)
    out = []
    for item, ids in zip(items, served, strict=True):
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item["question"]}]}]
        text = processor.apply_chat_template(conversation, add_generation_prompt=True)
        inputs = processor(images=Image.open(item["image"]).convert("RGB"), text=text, return_tensors="pt",
                           add_special_tokens=False)  # as vLLM's chat path: the template's text, nothing added
        with torch.no_grad():  # step by step with the KV cache: a served id may be the image token's
            step = model(**inputs, use_cache=True)
            logits = [step.logits[0, -1]]
            for token in ids[:-1]:
                step = model(input_ids=torch.tensor([[token]]), past_key_values=step.past_key_values, use_cache=True)
                logits.append(step.logits[0, -1])
        logprobs = torch.log_softmax(torch.stack(logits).float(), dim=-1)
        out.append((logprobs[torch.arange(len(ids)), ids].tolist(), logprobs.max(dim=-1).values.tolist()))
    return out


@pytest.mark.slow
def test_vllm_serves_the_llava_hf_exports_as_transformers(zoo, shapes, tmp_path):
    """vLLM's greedy tokens are transformers' greedy tokens (up to ties within TOL), with the same log-probabilities."""
    serve_bin = require_serve_bin()
    exports = zoo.llava_hf_exports(shapes)
    items = prompts(shapes)
    jobs = {}
    for name, dirs in exports.items():
        for mode, export in dirs.items():
            adapter = export / "adapter" if mode == "base+lora" else None
            jobs[name, mode] = {"model": str(export), "lora": str(adapter) if adapter else None, "max_lora_rank": 8,
                                "max_model_len": 512, "max_tokens": MAX_TOKENS, "logprobs": True, "items": items}
    (tmp_path / "jobs.json").write_text(json.dumps(list(jobs.values())))
    proc = subprocess.run([str(serve_bin / "python"), str(DRIVER), str(tmp_path / "jobs.json"),
                           str(tmp_path / "out.json")], env=vllm_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = dict(zip(jobs, json.loads((tmp_path / "out.json").read_text()), strict=True))
    assert {name for name, _ in results} >= {"llava-1.5-7b-hf", "llava-v1.6-mistral-7b-hf"}
    for (name, mode), result in results.items():
        assert result["error"] is None, (name, mode, result["error"])
        served = [a["token_ids"] for a in result["answers"]]
        assert len(served) == N_PROMPTS and all(served), (name, mode, served)
        job = jobs[name, mode]
        expected = transformers_logprobs(Path(job["model"]), job["lora"] and Path(job["lora"]), items, served)
        for answer, (logprobs, best) in zip(result["answers"], expected, strict=True):
            assert answer["logprobs"] == pytest.approx(logprobs, abs=TOL), (name, mode)
            assert all(lp >= top - TOL for lp, top in zip(logprobs, best, strict=True)), (name, mode, logprobs, best)
