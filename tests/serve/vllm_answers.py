"""Greedy answers of vLLM's offline engine through its chat path (the export's own chat template, as `vllm serve`).

Runs under .venv-serve/bin/python (vLLM's CPU build), never in the main venv:
    vllm_answers.py JOBS.json OUT.json
JOBS: [{"model": dir, "lora": dir | null, "max_lora_rank": int, "max_tokens": int, "logprobs": bool,
        "items": [{"image": path, "question": str}, ...]}, ...]   one engine per job, one after the other
OUT: [{"answers": [{"text": str, "token_ids": [int, ...], "logprobs": [float, ...] | null}, ...], "error": str | null},
     ...], one per job. With "logprobs": each generated token's log-probability, and no text: vLLM cannot detokenize
     the logprobs of ids past the tokenizer (the padded embedding rows an untrained model may pick).
A job whose engine fails records the error's last line and the next job still runs.
"""

from __future__ import annotations

import base64
import gc
import json
import sys
import traceback
from pathlib import Path


def image_url(path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def answer(job: dict) -> list[dict]:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    lora = job.get("lora")
    llm = LLM(model=job["model"], dtype="float32", max_model_len=job.get("max_model_len", 1024), seed=0,
              enable_lora=bool(lora), max_lora_rank=job.get("max_lora_rank", 16), max_num_seqs=16,
              limit_mm_per_prompt=job.get("limit_mm", {"image": 1}), enforce_eager=True)  # no torch.compile: a minute saved per engine
    conversations = [[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": image_url(item["image"])}},
        {"type": "text", "text": item["question"]}]}] for item in job["items"]]
    logprobs = job.get("logprobs", False)
    params = SamplingParams(temperature=0.0, max_tokens=job.get("max_tokens", 16), logprobs=1 if logprobs else None,
                            detokenize=not logprobs)
    request = LoRARequest("vistune", 1, lora) if lora else None
    outputs = llm.chat(conversations, params, lora_request=request, use_tqdm=False)
    del llm
    gc.collect()
    return [{"text": c.text, "token_ids": list(c.token_ids),
             "logprobs": [step[t].logprob for step, t in zip(c.logprobs, c.token_ids, strict=True)] if logprobs else None}
            for c in (o.outputs[0] for o in outputs)]


def main(jobs_path: str, out_path: str) -> None:
    results = []
    for job in json.loads(Path(jobs_path).read_text()):
        try:
            results.append({"answers": answer(job), "error": None})
        except Exception as err:  # noqa: BLE001 - reported to the test, which decides
            traceback.print_exc()
            results.append({"answers": [], "error": f"{type(err).__name__}: {str(err).strip()[:2000]}"})
        Path(out_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:3])
