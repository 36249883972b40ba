"""A synthetic task that needs image detail: one small shape somewhere in a wide image (`vistune data synth --task
detail`).

The default canvas is 3 tower inputs wide (96 x 32 for the tiny 32 px tower) and the shape lies wholly inside one of
its three tower-sized cells, so one AnyRes crop (LLaVA-NeXT) shows it at full resolution. Padded to a square and
resized to the tower's side (LLaVA-1.5) it shrinks by the canvas's aspect ratio (3x) to a blob of 2-3 pixels whose
kind is gone. The three shapes have equal area, so the blob's amount of ink does not give the kind away either,
while its colour survives the downscale (a control). Same files and question types as the shapes set, so
`eval --benchmark shapes` scores it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

from vistune.data_prep.synth.shapes import COLOURS, SHAPES, SHORT, _llava, write_splits

DETAIL_QUESTIONS = {
    "shape": ("What shape is in the image?", "What shape is shown?", "Which shape do you see?"),
    "colour": ("What color is the shape?", "What is the color of the shape?"),
}
# Half-extent of each shape, relative to the circle's radius, for equal areas: square (2a)^2 = pi r^2; triangle with
# base and height 2t: 2 t^2 = pi r^2.
_HALF_EXTENT = {"circle": 1.0, "square": math.sqrt(math.pi) / 2, "triangle": math.sqrt(math.pi / 2)}


def draw_small_shape(colour: str, shape: str, width: int, height: int, radius: float,
                     rng: random.Random, cell: int | None = None) -> Image.Image:
    """A white canvas with one shape of the area of a `radius`-pixel circle, wholly inside one random `cell`-pixel
    square cell of the canvas (cells tile it from the left; default cell: the canvas height)."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    cell = cell or height
    half = radius * _HALF_EXTENT[shape]
    margin = max(radius * h for h in _HALF_EXTENT.values()) + 1  # the same placement whatever the shape
    left = cell * rng.randrange(max(1, width // cell))
    top = cell * rng.randrange(max(1, height // cell))
    cx = left + rng.uniform(margin, min(cell, width) - margin)
    cy = top + rng.uniform(margin, min(cell, height) - margin)
    box = (cx - half, cy - half, cx + half, cy + half)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=fill)
    return img


def synthesize_detail(out_dir: str | Path, n: int = 1000, seed: int = 0, *, n_heldout: int | None = None,
                      width: int = 96, height: int = 32, radius: float = 5.0) -> dict[str, Path]:
    """Writes images/, align.json, instruct.json, heldout.json under out_dir; returns their paths."""
    if min(height, width) < 2 * (radius * max(_HALF_EXTENT.values()) + 1):
        raise ValueError(f"a {width} x {height} canvas cannot hold a shape of radius {radius}: "
                         f"make its sides at least {2 * (radius * max(_HALF_EXTENT.values()) + 1):.0f} px")
    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    n_heldout = n_heldout if n_heldout is not None else max(40, n // 10)
    align, instruct, heldout = [], [], []

    def scene(name: str) -> tuple[str, str, str]:
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        rel = f"images/{name}.png"
        draw_small_shape(colour, shape, width, height, radius, rng).save(out / rel, compress_level=1)
        return colour, shape, rel

    for i in range(n):
        colour, shape, image = scene(f"train_{i:06d}")
        align.append(_llava(f"align-{i}", image, [("Describe the image briefly.", f"A small {colour} {shape}.")]))
        kinds = list(DETAIL_QUESTIONS)
        rng.shuffle(kinds)
        answers = {"shape": shape, "colour": colour}
        instruct.append(_llava(f"instruct-{i}", image,
                               [(rng.choice(DETAIL_QUESTIONS[k]) + SHORT, answers[k]) for k in kinds]))
    for i in range(n_heldout):
        colour, shape, image = scene(f"heldout_{i:06d}")
        kind = ("shape", "colour")[i % 2]
        answer = {"shape": shape, "colour": colour}[kind]
        record = _llava(f"heldout-{i}", image, [(rng.choice(DETAIL_QUESTIONS[kind]) + SHORT, answer)])
        heldout.append({**record, "question_type": kind, "answer": answer})
    return write_splits(out, {"align": align, "instruct": instruct, "heldout": heldout})
