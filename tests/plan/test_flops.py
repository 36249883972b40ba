"""The FLOP model and the architecture numbers behind it: parameter counts equal transformers' own models,
and the per-token multipliers are the ones issue 7 states (6 / 4 / 6·N_lora / 2, recompute apart)."""

from __future__ import annotations

import pytest
import torch

from vistune.perf.arch import KNOWN_LLMS, KNOWN_VISION, LlavaArch, llava_arch_from_config
from vistune.perf.flops import Workload, mean_sample_flops, mfu, sequence_flops

CLIP_L336 = KNOWN_VISION["clip-vit-large-patch14-336"]


@pytest.mark.parametrize("name", ["vicuna-7b-v1.5", "vicuna-13b-v1.5", "llama-3-8b-instruct", "smollm2-135m"])
def test_llm_parameter_count_equals_transformers(name):
    from transformers import LlamaConfig, LlamaForCausalLM

    a = KNOWN_LLMS[name]
    config = LlamaConfig(hidden_size=a.hidden, num_hidden_layers=a.layers, intermediate_size=a.intermediate,
                         num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, vocab_size=a.vocab,
                         tie_word_embeddings=a.tied_embeddings)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert a.params == sum(p.numel() for p in model.parameters())


def test_vision_parameter_count_equals_transformers():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    v = CLIP_L336
    config = CLIPVisionConfig(hidden_size=v.hidden, num_hidden_layers=v.layers, intermediate_size=v.intermediate,
                              image_size=v.image_size, patch_size=v.patch_size, num_attention_heads=16)
    with torch.device("meta"):
        model = CLIPVisionModel(config)
    assert v.params == sum(p.numel() for p in model.parameters())
    assert v.patches == 576 and v.tokens == 577


def test_tiny_llava_counts_match_the_composed_model(tiny_llava):
    model, _ = tiny_llava
    arch = llava_arch_from_config(model.config)
    projector = sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    llm = sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel()
    assert arch.projector_params == projector
    assert arch.llm.params == llm


def test_lora_params_equal_peft(tiny_llava):
    from vistune.model import LoraSettings, attach_lora

    model, _ = tiny_llava
    arch = llava_arch_from_config(model.config)
    peft_model = attach_lora(model, LoraSettings(r=8, alpha=16))
    lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    assert arch.llm.lora_params(8) == lora


def test_multipliers():
    arch = LlavaArch(CLIP_L336, KNOWN_LLMS["vicuna-7b-v1.5"])
    n, s = arch.llm.matmul_params, 1000
    full = sequence_flops(arch, Workload("instruct", "full", gradient_checkpointing=False), s, images=0)
    frozen = sequence_flops(arch, Workload("align", gradient_checkpointing=False), s, images=0)
    lora = sequence_flops(arch, Workload("instruct", "lora", lora_r=128, gradient_checkpointing=False), s, images=0)
    assert full.llm == 6 * n * s and frozen.llm == 4 * n * s and lora.llm == 4 * n * s
    assert lora.lora == 6 * arch.llm.lora_params(128) * s
    assert full.attention == 3 * 4 * arch.llm.layers * arch.llm.hidden * s * s
    assert full.recompute == 0 and full.executed == full.model
    image = sequence_flops(arch, Workload("align"), 0, images=1)
    assert image.vision == pytest.approx(2 * CLIP_L336.matmul_params * 577 + 4 * 24 * 1024 * 577**2)


def test_recompute_is_a_third_of_stage1_work():
    arch = LlavaArch(CLIP_L336, KNOWN_LLMS["vicuna-7b-v1.5"])
    f = sequence_flops(arch, Workload("align", gradient_checkpointing=True), 22, images=1)
    assert 0.30 < f.recompute / f.executed < 0.34  # issue 7: "recompute is a third of the work there"


def test_mean_sample_weights_text_only_records():
    arch = LlavaArch(CLIP_L336, KNOWN_LLMS["vicuna-7b-v1.5"])
    work = Workload("instruct", "full")
    both = mean_sample_flops(arch, work, 300, image_fraction=0.5)
    img, txt = sequence_flops(arch, work, 300, 1), sequence_flops(arch, work, 300, 0)
    assert both.model == pytest.approx((img.model + txt.model) / 2)
    assert mfu(both.model, 1.0, both.model * 4) == pytest.approx(0.25)
