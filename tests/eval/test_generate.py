"""Generation: left-padded batches answer exactly as single prompts; prompts and image tokens as in training."""

import torch

from vistune.eval.generate import GenerationSettings, Generator
from vistune.eval.items import EvalItem


def _items(n=5):
    colours = ("What color is the shape?", "How many shapes are there?", "Where is the shape?")
    return [EvalItem(f"q{i}", colours[i % 3], image=f"images/heldout_{i:06d}.png") for i in range(n)]


def test_batched_equals_single(tiny_llava, shapes_data):
    model, processor = tiny_llava
    root = shapes_data["heldout"].parent
    g = Generator(model, processor, "vicuna_v1", image_root=root, settings=GenerationSettings(max_new_tokens=6,
                                                                                             batch_size=4))
    items = _items()
    batched = g.answer(items)
    g.settings.batch_size = 1
    assert batched == g.answer(items)
    assert len(batched) == len(items)


def test_prompt_and_image_tokens(tiny_llava):
    model, processor = tiny_llava
    g = Generator(model, processor, "vicuna_v1")
    prompt = g.render([("user", "What shape is shown?")], 1)
    assert prompt.endswith("USER: <image>\nWhat shape is shown? ASSISTANT:")
    ids = g.encode(prompt)
    assert ids.count(g.image_token_id) == model.config.image_seq_length
    # multi-turn: the image stays at the front of the first user turn only
    turns = [("user", "Hi"), ("assistant", "Hello"), ("user", "Colour?")]
    assert g.render(turns, 1).count("<image>") == 1


def test_stop_tokens_and_cleaning(tiny_llava):
    model, processor = tiny_llava
    g = Generator(model, processor, "vicuna_v1")
    assert g.stop_ids[0] == processor.tokenizer.eos_token_id
    assert g._clean(" red</s>USER: more") == "red"


def test_sampling_is_seeded(tiny_llava, shapes_data):
    model, processor = tiny_llava
    settings = GenerationSettings(max_new_tokens=5, temperature=1.0, seed=3)
    g = Generator(model, processor, "vicuna_v1", image_root=shapes_data["heldout"].parent, settings=settings)
    torch.manual_seed(123)
    assert g.answer(_items(2)) == g.answer(_items(2))
