"""Pretrains the tiny CLIP and tiny Llama for the AnyRes detail experiment (scripts/detail_anyres.sh).

Reuses the quickstart's pretraining (vistune.model.tiny_pretrain). The CLIP sees each training image both ways a
LLaVA model can: the tower-sized crop around the shape (what AnyRes tiles keep) and the whole image padded to a
square (what arch llava sees), so neither arm gets a tower tuned to its own view only.
Usage: python scripts/detail_parts.py DATA_DIR OUT_DIR [CLIP_STEPS] [LLM_STEPS]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from vistune.model.tiny import TinySpec
from vistune.model.tiny_pretrain import PretrainSettings, pretrain_tiny_clip, pretrain_tiny_llm


def views(img: Image.Image, size: int) -> list[Image.Image]:
    """The tower-sized crop centred on the (only) non-white region, and the whole image padded to a square."""
    ink = np.argwhere(np.asarray(img).min(axis=2) < 250)
    cy, cx = ink.mean(axis=0) if len(ink) else (img.height / 2, img.width / 2)
    left = int(min(max(cx - size / 2, 0), img.width - size))
    top = int(min(max(cy - size / 2, 0), img.height - size))
    crop = img.crop((left, top, left + size, top + size))
    side = max(img.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return [crop, square]


def main(data_dir: str, out_dir: str, clip_steps: int = 300, llm_steps: int = 200) -> None:
    data, out = Path(data_dir), Path(out_dir)
    size = TinySpec().image_size
    align = json.loads((data / "align.json").read_text())
    images, captions = [], []
    for r in align:
        caption = r["conversations"][-1]["value"]
        for view in views(Image.open(data / r["image"]).convert("RGB"), size):
            images.append(view)
            captions.append(caption)
    pretrain_tiny_clip(images, captions, out / "vision", settings=PretrainSettings(steps=clip_steps))
    instruct = json.loads((data / "instruct.json").read_text())
    texts = [r["conversations"][-1]["value"] for r in align]
    texts += [t["value"].replace("<image>", "").strip() for r in instruct for t in r["conversations"]]
    pretrain_tiny_llm(texts, out / "llm", settings=PretrainSettings(steps=llm_steps))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
