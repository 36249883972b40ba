"""Fixtures for the data room: one tiny processor per session, and small datasets written to tmp dirs."""

from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_processor(tiny_parts):
    """The LlavaProcessor of the tiny model (tokenizer with `<image>` added, 32 px CLIP image processor)."""
    from vistune.model import build_llava

    vision, llm = tiny_parts
    model, processor = build_llava(str(vision), str(llm))
    return processor


@pytest.fixture(scope="session")
def tokenizer(tiny_processor):
    return tiny_processor.tokenizer


@pytest.fixture()
def image_root(tmp_path):
    """An image root holding a.png (40x20 red) and b.png (20x20 blue)."""
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(root / "a.png")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(root / "b.png")
    return root


@pytest.fixture(scope="session")
def tiny_next_processor(tiny_parts):
    """The LlavaNextProcessor of the tiny model: each image's token count depends on its size."""
    from vistune.model import build_llava

    vision, llm = tiny_parts
    _, processor = build_llava(str(vision), str(llm), arch="llava_next")
    return processor
