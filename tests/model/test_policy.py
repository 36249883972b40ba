"""What trains in each stage: the freezing policy, LoRA placement and the QLoRA path."""

from __future__ import annotations

import pytest
import torch

from vistune.model import LoraSettings, apply_stage_policy, attach_lora, component_of, count_parameters


def _sizes(model):
    sizes = {}
    for name, p in model.named_parameters():
        sizes[component_of(name)] = sizes.get(component_of(name), 0) + p.numel()
    return sizes


def test_align_trains_only_the_projector(tiny_llava):
    model, _ = tiny_llava
    apply_stage_policy(model, "align")
    counts = count_parameters(model)
    sizes = _sizes(model)
    assert counts["projector"].trainable == sizes["projector"] > 0
    assert counts["vision"].trainable == 0 and counts["vision"].frozen == sizes["vision"]
    assert counts["llm"].trainable == 0 and counts["llm"].frozen == sizes["llm"]


def test_full_instruct_trains_llm_and_projector_not_vision(tiny_llava):
    model, _ = tiny_llava
    apply_stage_policy(model, "instruct", "full")
    counts = count_parameters(model)
    sizes = _sizes(model)
    assert counts["llm"].trainable == sizes["llm"]
    assert counts["projector"].trainable == sizes["projector"]
    assert counts["vision"].trainable == 0


def test_train_vision_unfreezes_the_tower(tiny_llava):
    model, _ = tiny_llava
    apply_stage_policy(model, "align", train_vision=True)
    assert count_parameters(model)["vision"].frozen == 0


def test_lora_wraps_only_llm_linear_layers(tiny_llava):
    model, _ = tiny_llava
    peft_model = attach_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0))
    apply_stage_policy(peft_model, "instruct", "lora")
    wrapped = [n for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and isinstance(m.lora_A, torch.nn.ModuleDict)]
    assert wrapped
    assert all(".language_model.layers." in n for n in wrapped), wrapped
    leaves = {n.rsplit(".", 1)[-1] for n in wrapped}
    assert leaves == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    counts = count_parameters(peft_model)
    assert counts["lora"].trainable > 0 and counts["lora"].frozen == 0
    assert counts["projector"].trainable > 0
    assert counts["llm"].trainable == 0 and counts["vision"].trainable == 0
    assert peft_model.peft_config["default"].modules_to_save is None


def test_unknown_lora_target_is_refused(tiny_llava):
    model, _ = tiny_llava
    with pytest.raises(ValueError, match="not linear layers of the LLM"):
        attach_lora(model, LoraSettings(r=4, target_modules=["q_proj", "fc1"]))


def test_qlora_builds_4bit_layers_and_grads_reach_only_lora_and_projector(tiny_parts):
    import bitsandbytes as bnb

    from vistune.model import build_llava

    vision, llm = tiny_parts
    model, processor = build_llava(str(vision), str(llm), load_in_4bit=True)
    n4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.model.language_model.modules())
    assert n4 == 7 * model.config.text_config.num_hidden_layers
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.model.vision_tower.modules())
    weight = next(m for m in model.model.language_model.modules() if isinstance(m, bnb.nn.Linear4bit)).weight
    assert weight.quant_state.quant_type == "nf4" and weight.quant_state.nested  # double quantisation
    peft_model = attach_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0))
    apply_stage_policy(peft_model, "instruct", "qlora")
    peft_model.train()
    from PIL import Image

    batch = processor(images=[Image.new("RGB", (32, 32), "red")], text=["<image>\nred"], return_tensors="pt")
    loss = peft_model(**batch, labels=batch["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    with_grad = {component_of(n) for n, p in peft_model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == {"lora", "projector"}


def test_projector_saves_and_loads_through_a_peft_wrapper(tiny_llava, tmp_path):
    from vistune.model import load_projector, projector_state_dict, save_projector

    model, _ = tiny_llava
    peft_model = attach_lora(model, LoraSettings(r=4, alpha=8, dropout=0.0))
    path = save_projector(peft_model, tmp_path)
    with torch.no_grad():
        for p in model.model.multi_modal_projector.parameters():
            p.zero_()
    load_projector(peft_model, path)
    state = projector_state_dict(peft_model)
    assert set(state) == {f"multi_modal_projector.linear_{i}.{k}" for i in (1, 2) for k in ("weight", "bias")}
    assert all(v.abs().sum() > 0 for v in state.values())
