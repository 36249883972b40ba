"""Generation configs as real checkpoints ship them: Vicuna's (sampling flags without do_sample) is repaired so it
saves, once-printed; evaluation decodes greedily whatever sampling / repetition penalty a base's config carries."""

from __future__ import annotations

import json
import logging

import pytest
import torch

VICUNA = {"bos_token_id": 1, "eos_token_id": 2, "max_length": 4096, "pad_token_id": 0, "temperature": 0.9,
          "top_p": 0.6, "transformers_version": "4.31.0"}  # lmsys/vicuna-7b-v1.5 generation_config.json


def test_vicuna_generation_config_is_repaired_to_save(tmp_path, caplog):
    from transformers import GenerationConfig

    from vistune.model.generation import repair_generation_config

    (tmp_path / "generation_config.json").write_text(json.dumps(VICUNA))
    config = GenerationConfig.from_pretrained(tmp_path)
    config.pad_token_id = 3  # what composing does: now transformers validates it strictly on save
    with pytest.raises(ValueError, match="do_sample"):
        config.save_pretrained(tmp_path / "refused")
    with caplog.at_level(logging.WARNING, logger="vistune.model.generation"):
        repair_generation_config(config, "vicuna")
        repair_generation_config(GenerationConfig.from_pretrained(tmp_path), "vicuna")
    ours = [r.getMessage() for r in caplog.records if r.name == "vistune.model.generation"]
    assert len(ours) == 1 and "temperature, top_p" in ours[0]  # printed once
    assert (config.temperature, config.top_p, config.do_sample) == (None, None, None)
    assert (config.max_length, config.pad_token_id, config.eos_token_id) == (4096, 3, 2)  # the rest kept
    config.save_pretrained(tmp_path / "saved")
    assert "temperature" not in json.loads((tmp_path / "saved" / "generation_config.json").read_text())


def test_sampling_config_with_do_sample_is_left_alone():
    from transformers import GenerationConfig

    from vistune.model.generation import repair_generation_config

    qwen2 = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05)
    repair_generation_config(qwen2, "qwen2")
    assert (qwen2.do_sample, qwen2.temperature, qwen2.top_p, qwen2.top_k, qwen2.repetition_penalty) == (
        True, 0.7, 0.8, 20, 1.05)


def test_eval_decodes_greedily_whatever_the_base_config_says(tiny_llava):
    from transformers import GenerationConfig

    from vistune.eval.generate import GenerationSettings, Generator

    model, processor = tiny_llava
    settings = GenerationSettings(max_new_tokens=8)
    prompts = ["USER: What colour is the shape? ASSISTANT:", "USER: red red red red ASSISTANT:"]
    model.generation_config = GenerationConfig(eos_token_id=processor.tokenizer.eos_token_id)
    plain = Generator(model, processor, "vicuna_v1", settings=settings).generate(prompts, [None, None])

    # Qwen2's shipped sampling settings; its penalty (1.05) exaggerated, inverted so that it surely changes the path
    model.generation_config = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20,
                                               repetition_penalty=0.02, eos_token_id=processor.tokenizer.eos_token_id)
    ids = processor.tokenizer(prompts[1], return_tensors="pt")
    with torch.no_grad():
        greedy = model.generate(**ids, max_new_tokens=8, do_sample=False, repetition_penalty=1.0)
        penalised = model.generate(**ids, max_new_tokens=8, do_sample=False)  # generate() takes the config's penalty
    assert not torch.equal(greedy, penalised)  # the penalty would change this answer: the test can fail
    torch.manual_seed(0)
    first = Generator(model, processor, "vicuna_v1", settings=settings).generate(prompts, [None, None])
    torch.manual_seed(1)
    second = Generator(model, processor, "vicuna_v1", settings=settings).generate(prompts, [None, None])
    assert first == second == plain


def test_neutral_values_are_not_a_repair(caplog):
    from transformers import GenerationConfig

    from vistune.model.generation import repair_generation_config

    config = GenerationConfig(temperature=1.0, top_p=1.0, length_penalty=1.0, eos_token_id=2)
    with caplog.at_level(logging.WARNING, logger="vistune.model.generation"):
        repair_generation_config(config, "neutral")
    assert not [r for r in caplog.records if r.name == "vistune.model.generation"]
    assert (config.temperature, config.top_p) == (1.0, 1.0)
