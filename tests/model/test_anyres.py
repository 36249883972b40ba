"""LLaVA-NeXT / OneVision composed from parts: token counts and crop layouts equal transformers' own processors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vistune import IMAGE_TOKEN

# (height, width): tiny, square, huge, and extreme aspect ratios both ways
SIZES = [(1, 1), (2, 3), (10, 500), (500, 10), (32, 32), (33, 31), (64, 128), (1000, 1000), (3000, 2000),
         (1, 4000), (4000, 1), (224, 224), (336, 1008), (720, 1280), (1080, 1920), (97, 13), (13, 97), (640, 480),
         (480, 640), (5000, 3000)]


def _image(height: int, width: int, seed: int = 0) -> Image.Image:
    """Random 8 x 8 blocks stretched to the size (cheap to make and to save, yet every crop differs)."""
    rng = np.random.default_rng(seed)
    blocks = Image.fromarray(rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8))
    return blocks.resize((width, height), Image.Resampling.NEAREST)


@pytest.fixture(scope="module")
def tiny_next(tiny_parts):
    from vistune.model import build_llava

    vision, llm = tiny_parts
    return build_llava(str(vision), str(llm), arch="llava_next")


def _clip336_processor(arch: str, tokenizer):
    """The published LLaVA-NeXT setting: CLIP-L/336 (patch 14, CLS dropped) on the published pinpoints."""
    from transformers import CLIPImageProcessorPil

    from vistune.model import anyres

    tower = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    return anyres.build_processor(arch, tower, tokenizer, patch_size=14, tower_size=336, drop_cls=True,
                                  pinpoints=anyres.default_pinpoints(arch, 336), vision_aspect_ratio="anyres_max_9",
                                  image_token=IMAGE_TOKEN, chat_template=None)


def _processor_tokens_and_crops(processor, image: Image.Image) -> tuple[int, int]:
    """What transformers' processor itself produces for one image: image tokens in the text, crops in the pixels."""
    out = processor(images=[image], text=[f"{IMAGE_TOKEN}\nhi"], return_tensors="pt")
    tokens = int((out["input_ids"] == processor.image_token_id).sum())
    return tokens, int(out["pixel_values"].shape[1])


def _check_sizes(processor, sizes=SIZES):
    from vistune.model.anyres import crop_layout, image_token_counts

    for height, width in sizes:
        tokens, crops = _processor_tokens_and_crops(processor, _image(height, width))
        rows, cols = crop_layout(processor, (height, width))
        assert image_token_counts(processor, [(height, width)]) == [tokens], (height, width)
        assert 1 + rows * cols == crops, (height, width)


def test_published_llava_next_token_counts_and_crops_equal_the_processor(tiny_next):
    _check_sizes(_clip336_processor("llava_next", tiny_next[1].tokenizer))


def test_published_onevision_token_counts_and_crops_equal_the_processor(tiny_next):
    pytest.importorskip("torchvision", reason="transformers builds LlavaOnevisionProcessor's video part on torchvision")
    _check_sizes(_clip336_processor("llava_onevision", tiny_next[1].tokenizer))


def test_onevision_counts_and_crops_equal_transformers_without_torchvision():
    """Where LlavaOnevisionProcessor cannot be built (no torchvision), vistune's OneVision counts (the planner's
    `count_tokens`) still equal transformers' own: crops = what LlavaOnevisionImageProcessorPil cuts, tokens = the
    length LlavaOnevisionModel.pack_image_features gives those crops (grid, unpadding, anyres_max_9 pooling,
    newlines) in the published CLIP-L/336 setting."""
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaOnevisionConfig
    from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel

    from vistune.model import anyres

    points = anyres.default_pinpoints("llava_onevision", 336)
    image_processor = anyres.anyres_image_processor("llava_onevision", CLIPImageProcessorPil(), 336, points)
    config = LlavaOnevisionConfig(
        vision_config=CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=8, intermediate_size=8,
                                       num_hidden_layers=1, num_attention_heads=1).to_dict(),
        text_config=LlamaConfig(vocab_size=8, hidden_size=4, intermediate_size=4, num_hidden_layers=1,
                                num_attention_heads=1).to_dict(),
        image_grid_pinpoints=points, vision_aspect_ratio="anyres_max_9")
    model = LlavaOnevisionModel(config)
    for height, width in SIZES:
        tokens, tower_inputs = anyres.count_tokens("llava_onevision", tower_size=336, patch_size=14, drop_cls=True,
                                                   pinpoints=points, image_size=(height, width))
        crops = image_processor(images=[_image(height, width)], return_tensors="pt")["pixel_values"].shape[1]
        assert tower_inputs == crops, (height, width)
        features = torch.zeros(crops, 24 * 24, 4)  # (336 / 14)^2 patches a crop once the CLS is dropped
        _, lengths = model.pack_image_features([features], torch.tensor([[height, width]]), torch.zeros(4),
                                               vision_aspect_ratio="anyres_max_9")
        assert tokens == int(lengths[0]), (height, width)


def test_tiny_llava_next_dataset_matches_the_processor_for_20_sizes(tiny_next, tmp_path):
    """The training path (sizes read from file headers, tokenised, images tiled) equals the processor's output."""
    from vistune.data_prep import DataCollator, VisualInstructDataset, get_template, load_records

    model, processor = tiny_next
    records = []
    for i, (height, width) in enumerate(SIZES):
        _image(height, width, seed=i).save(tmp_path / f"{i}.png")
        records.append({"id": str(i), "image": f"{i}.png", "conversations": [
            {"from": "human", "value": f"{IMAGE_TOKEN}\nWhat shape?"}, {"from": "gpt", "value": "a red circle"}]})
    (tmp_path / "data.json").write_text(json.dumps(records))
    dataset = VisualInstructDataset(load_records(str(tmp_path / "data.json")), processor, get_template("plain"),
                                    image_root=tmp_path, num_image_tokens=16, max_length=4096)
    assert len(dataset) == len(SIZES)
    image_id = model.config.image_token_id
    for i, (height, width) in enumerate(SIZES):
        item = dataset[i]
        expected = processor(images=[Image.open(tmp_path / f"{i}.png")], text=[f"{IMAGE_TOKEN}\nhi"],
                             return_tensors="pt")
        assert int((item["input_ids"] == image_id).sum()) == int((expected["input_ids"] == image_id).sum())
        torch.testing.assert_close(item["pixel_values"], expected["pixel_values"])
        assert item["image_sizes"].tolist() == [[height, width]]
    batch = DataCollator(processor.tokenizer.pad_token_id)([dataset[i] for i in (0, 3, 8, 9)])
    batch.pop("ids")
    with torch.no_grad():
        out = model(**batch)  # transformers checks one feature per image token
    assert torch.isfinite(out.loss)


def test_image_too_large_for_max_length_is_skipped_naming_its_tokens(tiny_next, tmp_path):
    from vistune.data_prep import VisualInstructDataset, get_template, load_records

    _, processor = tiny_next
    _image(2000, 2000).save(tmp_path / "wide.png")
    (tmp_path / "d.json").write_text(json.dumps([{"id": "wide", "image": "wide.png", "conversations": [
        {"from": "human", "value": f"{IMAGE_TOKEN}\nWhat?"}, {"from": "gpt", "value": "red"}]}]))
    dataset = VisualInstructDataset(load_records(str(tmp_path / "d.json")), processor, get_template("plain"),
                                    image_root=tmp_path, num_image_tokens=16, max_length=40)
    assert len(dataset) == 0
    (skip,) = list(dataset.skips)
    tokens = processor._get_num_multimodal_tokens(image_sizes=[[2000, 2000]])["num_image_tokens"][0]
    assert skip.problem == "too_long" and f"image tokens: {tokens}" in skip.reason


def test_pinpoint_not_a_multiple_of_the_tower_is_refused(tiny_parts):
    from vistune.model import build_llava
    from vistune.model.anyres import PinpointError

    vision, llm = tiny_parts
    with pytest.raises(PinpointError, match=r"\[32, 40\].*multiples of the vision tower's input size 32"):
        build_llava(str(vision), str(llm), arch="llava_next", image_grid_pinpoints=[[32, 64], [32, 40]])


def test_pinpoint_error_is_a_config_error(tiny_parts, tmp_path):
    from vistune.train.run.build import arch_settings
    from vistune.train.run.config import ConfigError, load_config

    vision, llm = tiny_parts
    config = load_config(None, [f"data.path={tmp_path}/x.json", f"model.vision={vision}", f"model.llm={llm}",
                                "model.arch=llava_next", "model.image_grid_pinpoints=[[33, 66]]"])
    with pytest.raises(ConfigError, match="33"):
        arch_settings(config)


def test_image_newline_initialised_as_llava_next_and_trained_with_the_projector(tiny_next, tmp_path):
    from vistune.model import apply_stage_policy, load_projector, save_projector

    model, _ = tiny_next
    newline = model.model.image_newline
    hidden = model.config.text_config.hidden_size
    assert newline.shape == (hidden,) and newline.device.type == "cpu"
    assert 0.5 / hidden**0.5 < float(newline.detach().std()) < 1.5 / hidden**0.5  # N(0, 1/hidden) as llava_arch.py
    apply_stage_policy(model, "align")
    assert newline.requires_grad
    assert {n for n, p in model.named_parameters() if p.requires_grad} >= {"model.image_newline"}
    saved = save_projector(model, tmp_path)
    with torch.no_grad():
        newline.zero_()
    load_projector(model, saved)
    assert float(newline.abs().sum()) > 0
