"""Every zoo entry round-trips: load or compose it, render its chat template as the real model does, train one
step, export (merged and base+lora), and reload each export in plain transformers / PEFT with identical logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.train.helpers import assert_hub_layout

MESSAGES = [{"role": "user", "content": "<image>\nWhat is the colour of the shape?"},
            {"role": "assistant", "content": "red"}, {"role": "user", "content": "How many shapes are there?"},
            {"role": "assistant", "content": "two"}]


def _render(template: str, tokenizer, messages=MESSAGES) -> str:
    from vistune.data_prep import get_template, record_from_messages

    return get_template(template).render(record_from_messages(messages, ["x.png"]), tokenizer).text


def _roundtrip(tmp_path, shapes, **settings) -> None:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from vistune.model.checkpoints.load import load_trained
    from vistune.train.run.config import load_config
    from vistune.train.saving.export import export
    from vistune.train.stages.engine import train

    items = {"model.dtype": "float32", "data.path": str(shapes / "small.json"), "data.image_root": str(shapes),
             "data.max_length": 400, "data.num_workers": 0, "lora.r": 4, "lora.alpha": 8, "optim.max_steps": 1,
             "optim.per_device_batch_size": 2, "optim.gradient_checkpointing": False, "optim.bf16": False,
             "optim.tf32": False, "output_dir": str(tmp_path / "run"), "save_steps": 0, "seed": 0, **settings}
    config = load_config(None, [f"{k}={v}" for k, v in items.items()])
    assert train(config).global_step == 1
    out = export(tmp_path / "run", tmp_path / "export", mode="merged", dtype="float32")
    assert {"language_model.model.", "vision_tower.vision_model.", "multi_modal_projector."} <= assert_hub_layout(out)

    trained, processor, _ = load_trained(tmp_path / "run", merge=True)
    plain = LlavaForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    plain_processor = AutoProcessor.from_pretrained(out)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    batch = plain_processor(images=[image], text=["<image>\nWhat is the colour of the shape?"], return_tensors="pt")
    assert torch.equal(batch["input_ids"], processor(images=[image], text=["<image>\nWhat is the colour of the shape?"],
                                                     return_tensors="pt")["input_ids"])
    with torch.no_grad():
        assert torch.allclose(plain(**batch).logits, trained(**batch).logits, atol=1e-6, rtol=0)

    from peft import PeftModel

    split = export(tmp_path / "run", tmp_path / "export-base+lora", mode="base+lora", dtype="float32")
    assert "vision_tower.vision_model." in assert_hub_layout(split)
    base = LlavaForConditionalGeneration.from_pretrained(split, dtype=torch.float32)
    with_adapter = PeftModel.from_pretrained(base, str(split / "adapter")).eval()
    config = base.config
    assert config.text_config.vocab_size == base.get_input_embeddings().weight.shape[0] >= len(plain_processor.tokenizer)
    with torch.no_grad():
        assert torch.allclose(with_adapter(**batch).logits, trained(**batch).logits, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_vicuna_clip(zoo, shapes, tmp_path):
    """LLaVA-1.5's own parts: a sentencepiece-only Vicuna (.bin shards) + a full CLIPModel checkpoint (.bin)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(zoo.vicuna())
    assert _render("vicuna_v1", tokenizer).endswith(" USER: <image>\nWhat is the colour of the shape? ASSISTANT: "
                                                    "red</s>USER: How many shapes are there? ASSISTANT: two</s>")
    _roundtrip(tmp_path, shapes, **{"model.vision": zoo.clip(), "model.llm": zoo.vicuna(), "model.allow_pickle": True,
                                    "data.template": "vicuna_v1"})


@pytest.mark.slow
def test_llama3_siglip(zoo, shapes, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(zoo.llama3())
    assert tokenizer.clean_up_tokenization_spaces is True  # as Meta-Llama-3-8B-Instruct's tokenizer_config.json
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<|begin_of_text|>", "<|eot_id|>")] == [128000, 128009]
    assert len(tokenizer) == 128256
    assert _render("llama3", tokenizer) == tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    _roundtrip(tmp_path, shapes, **{"model.vision": zoo.siglip(), "model.llm": zoo.llama3(), "data.template": "llama3"})


@pytest.mark.slow
def test_qwen2_clip(zoo, shapes, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(zoo.qwen2())
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [
        151643, 151644, 151645]
    assert len(tokenizer) == 151646 and tokenizer.bos_token is None
    with_system = [{"role": "system", "content": "You are a helpful assistant."}, *MESSAGES]
    assert _render("chatml", tokenizer, with_system) == tokenizer.apply_chat_template(with_system, tokenize=False)
    assert _render("auto", tokenizer) == tokenizer.apply_chat_template(MESSAGES, tokenize=False)  # its default system
    _roundtrip(tmp_path, shapes, **{"model.vision": zoo.clip(), "model.llm": zoo.qwen2(), "model.allow_pickle": True,
                                    "data.template": "auto"})


@pytest.mark.slow
def test_mistral_clip(zoo, shapes, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(zoo.mistral())
    assert not (zoo.mistral() / "tokenizer.json").exists()  # sentencepiece only
    rendered = _render("auto", tokenizer)
    assert rendered == "<s>[INST] <image>\nWhat is the colour of the shape? [/INST]red</s>[INST] How many shapes are " \
                       "there? [/INST]two</s>"
    _roundtrip(tmp_path, shapes, **{"model.vision": zoo.clip(), "model.llm": zoo.mistral(), "model.allow_pickle": True,
                                    "data.template": "auto"})


@pytest.mark.slow
def test_llava_hf(zoo, shapes, tmp_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(zoo.llava_hf())
    typed = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is the colour of the shape?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "red"}]},
             {"role": "user", "content": [{"type": "text", "text": "How many shapes are there?"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "two"}]}]
    processor.tokenizer.chat_template = processor.chat_template
    assert _render("auto", processor.tokenizer) == processor.apply_chat_template(typed, tokenize=False)
    _roundtrip(tmp_path, shapes, **{"model.base": zoo.llava_hf()})


@pytest.mark.slow
def test_llava_checkpoint_as_base(zoo, shapes, tmp_path):
    """liuhaotian/llava-v1.5-7b's format used directly as model.base: converted on the fly, template vicuna_v1."""
    from vistune.train.run.config import load_config

    base = {"model.base": zoo.llava_v15(), "model.base_vision": zoo.clip(), "model.allow_pickle": True}
    config = load_config(None, [f"{k}={v}" for k, v in base.items()] + [f"data.path={shapes / 'small.json'}"])
    assert config.template == "vicuna_v1"  # auto = what LLaVA-1.5 trained with (conv_mode llava_v1)
    _roundtrip(tmp_path, shapes, **base)


@pytest.mark.slow
def test_llava_lora_dir_imported(zoo, shapes, tmp_path):
    from vistune.model.checkpoints.llava_format import import_llava

    out = tmp_path / "imported"
    import_llava(zoo.llava_lora(), out, vision=str(zoo.clip()), base=str(zoo.vicuna()), dtype="float32",
                 allow_pickle=True)
    _roundtrip(tmp_path, shapes, **{"model.base": out, "model.allow_pickle": True})


@pytest.mark.slow
def test_stage1_projector_bin(zoo, shapes, tmp_path):
    from safetensors.torch import load_file

    from vistune.model.checkpoints.llava_format import import_projector

    proj = import_projector(zoo.projector_bin() / "mm_projector.bin", tmp_path / "proj", allow_pickle=True)
    assert len(proj.lines) == 4
    _roundtrip(tmp_path, shapes, **{"model.vision": zoo.clip(), "model.llm": zoo.vicuna(), "model.allow_pickle": True,
                                    "model.projector": tmp_path / "proj" / "projector.safetensors",
                                    "data.template": "vicuna_v1"})
    assert load_file(str(tmp_path / "proj" / "projector.safetensors"))["multi_modal_projector.linear_1.weight"].shape \
        == (64, 32)


def test_pickle_shards_need_allow_pickle(zoo):
    """Vicuna's .bin shards (with their index) load only with model.allow_pickle: safetensors only by default."""
    from vistune.model import build_llava
    from vistune.model.compose import PickleWeightsRefused

    with pytest.raises(PickleWeightsRefused, match="allow_pickle"):
        build_llava(str(zoo.siglip()), str(zoo.vicuna()), dtype="float32")
    model, processor = build_llava(str(zoo.siglip()), str(zoo.vicuna()), dtype="float32", allow_pickle=True)
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_index == 400
