"""Serving-room fixtures: vLLM's CPU build in .venv-serve, and a small model it can run, trained and exported.

vLLM runs only in subprocesses under .venv-serve/bin/python (scripts/setup_serve.sh builds it; vLLM pins an older
transformers than .venv's). Without .venv-serve the vLLM tests skip, except in CI (CI=true), where they fail.
vLLM's CPU attention has no kernel for head size 16 (the tiny Llama's), so these tests build a tiny Llama with
head size 64 (hidden 128, 2 heads).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.train.conftest import REPO, TINY, subprocess_env

SERVE_BIN = REPO / ".venv-serve" / "bin"
N_QUESTIONS = 16


def vllm_env() -> dict:
    """Environment of a vLLM subprocess: small KV cache (GiB), the engine in-process where vLLM allows it."""
    env = subprocess_env()
    env.update(OMP_NUM_THREADS="2", VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    return env


def require_serve_bin() -> Path:
    """.venv-serve/bin; skips the test without it, or fails it in CI."""
    if (SERVE_BIN / "python").is_file():
        return SERVE_BIN
    if os.environ.get("CI") == "true":
        pytest.fail(".venv-serve is missing in CI: .ci/run must run scripts/setup_serve.sh before the tests")
    pytest.skip(".venv-serve is absent: `bash scripts/setup_serve.sh` builds it (vLLM's CPU build) for these tests")


@pytest.fixture(scope="session")
def serve_bin() -> Path:
    return require_serve_bin()


@dataclass
class Exported:
    merged: Path  # LoRA folded in
    base_lora: Path  # base + adapter/ (the LoRA the run trained)
    llava_next: Path  # a LLaVA-NeXT (AnyRes) export, briefly trained: its weights and image_newline must load
    base: Path  # the fully instruct-tuned model, exported merged: the start of the LoRA and rl stages
    rl_data: Path  # rl.json: questions with exact answers, and their images
    rl_merged: Path  # a LoRA stage rl (GRPO) from the base, exported merged
    rl_base_lora: Path  # the same rl run exported base + adapter/
    items: list[dict]  # held-out questions: {"image": absolute path, "question": text}
    data: Path  # the synthetic data they come from: heldout.json (the same questions), images/
    rank: int  # the adapter's LoRA rank


@pytest.fixture(scope="session")
def vllm_exports(serve_bin, tmp_path_factory) -> Exported:
    """A head-size-64 tiny LLaVA: full instruct tuning (so that answers depend on the question), then a LoRA stage
    and a LoRA stage rl on its export, each exported merged and base+lora in float32."""
    from vistune.data_prep import synthesize
    from vistune.data_prep.synth.rl import synthesize_rl
    from vistune.model.tiny import TinySpec, ensure_tiny_parts
    from vistune.train.run.config import load_config
    from vistune.train.saving.export import export
    from vistune.train.stages.engine import train

    root = tmp_path_factory.mktemp("vllm-model")
    vision, llm = ensure_tiny_parts(TinySpec(llm_hidden=128, llm_heads=2, llm_kv_heads=1, llm_intermediate=256))
    paths = synthesize(root / "data", n=256, seed=0, n_heldout=N_QUESTIONS)
    common = [f"data.path={paths['instruct']}", f"data.image_root={root / 'data'}", "save_steps=0",
              "model.projector=null", "model.preset=null"]
    train(load_config(TINY / "instruct_full.yaml", common + [
        f"output_dir={root / 'full'}", f"model.vision={vision}", f"model.llm={llm}", "optim.max_steps=150",
        "optim.lr=3e-3", "optim.projector_lr=3e-3"]))
    export(root / "full", root / "base", mode="merged", dtype="float32")
    train(load_config(TINY / "instruct_lora.yaml", common + [
        f"output_dir={root / 'lora'}", f"model.base={root / 'base'}", "optim.max_steps=12", "optim.lr=3e-3"]))
    export(root / "lora", root / "merged", mode="merged", dtype="float32")
    export(root / "lora", root / "base_lora", mode="base+lora", dtype="float32")
    rl_data = synthesize_rl(root / "rl-data", n=32, n_heldout=4, seed=1)["rl"]
    train(load_config(TINY / "rl_lora.yaml", [
        f"data.path={rl_data}", f"data.image_root={root / 'rl-data'}", "save_steps=0", f"rl.start={root / 'base'}",
        f"output_dir={root / 'rl'}", "optim.max_steps=6", "optim.lr=3e-3", "rl.beta=0.1"]))
    export(root / "rl", root / "rl_merged", mode="merged", dtype="float32")
    export(root / "rl", root / "rl_base_lora", mode="base+lora", dtype="float32")
    train(load_config(TINY / "instruct_full.yaml", common + [
        f"output_dir={root / 'next'}", f"model.vision={vision}", f"model.llm={llm}", "model.arch=llava_next",
        "data.max_length=512", "optim.max_steps=20", "optim.lr=3e-3", "optim.projector_lr=3e-3"]))
    export(root / "next", root / "llava_next", mode="merged", dtype="float32")
    heldout = json.loads(paths["heldout"].read_text())
    items = [{"image": str(root / "data" / r["image"]),
              "question": r["conversations"][0]["value"].replace("<image>", "").strip()} for r in heldout]
    rank = json.loads((root / "base_lora" / "adapter" / "adapter_config.json").read_text())["r"]
    return Exported(root / "merged", root / "base_lora", root / "llava_next", root / "base", rl_data, root / "rl_merged",
                    root / "rl_base_lora", items[:N_QUESTIONS], root / "data", rank)


def vistune_answers(export: Path, items: list[dict], adapter: Path | None = None, max_new_tokens: int = 16) -> list[str]:
    """Greedy answers as `vistune eval run` / `vistune chat` give them (transformers, the export's template)."""
    from vistune.eval.generate import GenerationSettings, Generator
    from vistune.eval.items import EvalItem
    from vistune.eval.loading import load_model

    model, processor, template = load_model(export, adapter=adapter)
    generator = Generator(model, processor, template, image_root="/",
                          settings=GenerationSettings(max_new_tokens=max_new_tokens))
    return generator.answer([EvalItem(str(i), it["question"], os.path.relpath(it["image"], "/"))
                             for i, it in enumerate(items)])
