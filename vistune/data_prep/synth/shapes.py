"""A synthetic visual instruction dataset: coloured shapes on a canvas, generated locally in seconds.

Written as LLaVA JSON + an `images/` folder so it goes through exactly the path user data takes. Kept
legible to a tiny tower (1-3 shapes of one size, each in its own cell of a 3 x 3 grid, never touching; four very
distinct colours, three shapes, five positions) so that every answer can be read from what a tiny LLaVA sees;
answers are single words, so held-out accuracy is an exact match.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 230), "yellow": (245, 205, 0)}
SHAPES = ("circle", "square", "triangle")
# Centres of five cells of a 3 x 3 grid: a tower with 3 x 3 patches sees each shape in exactly one patch.
POSITIONS = {"left": (1 / 6, 0.5), "right": (5 / 6, 0.5), "top": (0.5, 1 / 6), "bottom": (0.5, 5 / 6), "center": (0.5, 0.5)}
RADIUS = 0.12  # of the image side, for every count: a shape stays inside its cell and never touches another
_WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
          "center": "in the center"}
_NUMBERS = {1: "One", 2: "Two", 3: "Three"}
SHORT = "\nAnswer the question using a single word or phrase."
QUESTIONS = {
    "colour": ("What color is the {noun}?", "What is the color of the {noun}?", "Which color is the {noun}?"),
    "shape": ("What shape is in the image?", "What shape is shown?", "Which shape do you see?"),
    "count": ("How many shapes are there?", "How many shapes are in the image?"),
    "position": ("Where is the shape?", "Where is the shape in the image?"),
}
_TEXT_ONLY = [("What is the opposite of left?", "right"), ("What is the opposite of top?", "bottom"),
              ("What is the opposite of right?", "left"), ("What is the opposite of bottom?", "top"),
              ("How many sides does a triangle have?", "3"), ("How many sides does a square have?", "4")]


@dataclass
class Scene:
    colour: str
    shape: str
    count: int
    positions: list[str]

    def answer(self, question_type: str) -> str:
        return {"colour": self.colour, "shape": self.shape, "count": str(self.count),
                "position": self.positions[0]}[question_type]

    def question_types(self) -> list[str]:
        return ["colour", "shape", "count"] + (["position"] if self.count == 1 else [])

    def caption(self) -> str:
        if self.count == 1:
            return f"A {self.colour} {self.shape} {_WHERE[self.positions[0]]}."
        return f"{_NUMBERS[self.count]} {self.colour} {self.shape}s."


def random_scene(rng: random.Random) -> Scene:
    count = rng.choice((1, 1, 2, 3))
    return Scene(rng.choice(list(COLOURS)), rng.choice(SHAPES), count, rng.sample(list(POSITIONS), count))


def scene_for(rng: random.Random, question_type: str) -> Scene:
    """A random scene that can answer `question_type` (position needs a single shape: keep the first one)."""
    scene = random_scene(rng)
    if question_type not in scene.question_types():
        scene = Scene(scene.colour, scene.shape, 1, scene.positions[:1])
    return scene


def draw_scene(scene: Scene, size: int, rng: random.Random) -> Image.Image:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    radius = size * RADIUS
    for pos in scene.positions:
        fx, fy = POSITIONS[pos]
        cx, cy = fx * size + rng.uniform(-1, 1) * size / 64, fy * size + rng.uniform(-1, 1) * size / 64
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        colour = COLOURS[scene.colour]
        if scene.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif scene.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    return img


def _asked(rng: random.Random, scene: Scene) -> list[str]:
    """Question types for one training conversation, in random order: two or more of the scene's types, and always
    "position" when the scene has one (only single shapes do, so it would otherwise be the rarest answer)."""
    kinds = scene.question_types()
    rng.shuffle(kinds)
    asked = kinds[: rng.randint(2, len(kinds))]
    if "position" in kinds and "position" not in asked:
        asked[rng.randrange(len(asked))] = "position"
    return asked


def question(rng: random.Random, scene: Scene, question_type: str) -> str:
    noun = "shape" if scene.count == 1 else "shapes"
    return rng.choice(QUESTIONS[question_type]).format(noun=noun) + SHORT


def synthesize(out_dir: str | Path, n: int = 1000, seed: int = 0, *, n_heldout: int | None = None,
               image_size: int = 64, text_only_fraction: float = 0.05) -> dict[str, Path]:
    """Writes images/, align.json, instruct.json, heldout.json under out_dir; returns their paths."""
    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    n_heldout = n_heldout if n_heldout is not None else max(40, n // 10)
    align, instruct, heldout = [], [], []
    for i in range(n):
        scene, image = _write_image(out, f"train_{i:06d}", scene=random_scene(rng), size=image_size, rng=rng)
        align.append(_llava(f"align-{i}", image, [("Describe the image briefly.", scene.caption())]))
        qa = [(question(rng, scene, k), scene.answer(k)) for k in _asked(rng, scene)]
        instruct.append(_llava(f"instruct-{i}", image, qa))
        if rng.random() < text_only_fraction:
            q, a = rng.choice(_TEXT_ONLY)
            instruct.append(_llava(f"text-{i}", None, [(q + SHORT, a)]))
    types = list(QUESTIONS)
    for i in range(n_heldout):
        kind = types[i % len(types)]
        scene = scene_for(rng, kind)
        scene, image = _write_image(out, f"heldout_{i:06d}", scene=scene, size=image_size, rng=rng)
        record = _llava(f"heldout-{i}", image, [(question(rng, scene, kind), scene.answer(kind))])
        heldout.append({**record, "question_type": kind, "answer": scene.answer(kind)})
    return write_splits(out, {"align": align, "instruct": instruct, "heldout": heldout})


def write_splits(out: Path, splits: dict[str, list[dict]]) -> dict[str, Path]:
    """Writes each split as out/<name>.json; returns their paths and the images/ folder's."""
    paths = {}
    for name, data in splits.items():
        paths[name] = out / f"{name}.json"
        paths[name].write_text(json.dumps(data, indent=1), encoding="utf-8")
    paths["images"] = out / "images"
    return paths


def wrong_answer(rng: random.Random, scene: Scene, question_type: str) -> str:
    """A plausible wrong answer of the same kind: another colour, shape, count or position."""
    options = {"colour": list(COLOURS), "shape": list(SHAPES), "count": ["1", "2", "3"],
               "position": list(POSITIONS)}[question_type]
    return rng.choice([o for o in options if o != scene.answer(question_type)])


def synthesize_preferences(out_dir: str | Path, n: int = 600, seed: int = 1, *, n_heldout: int = 200,
                           image_size: int = 64) -> dict[str, Path]:
    """Writes prefer.json and prefer_heldout.json (new images, never in the other splits): one question per
    image, chosen = the right answer, rejected = a plausible wrong one (colour, shape, count or position)."""
    rng = random.Random(seed)
    splits = {"prefer": [], "prefer_heldout": []}
    for split, i, kind, scene, image in one_question_per_image(Path(out_dir), rng, {"prefer": n, "prefer_heldout": n_heldout},
                                                               image_size):
        splits[split].append({"id": f"{split}-{i}", "image": image,
                              "conversations": [{"from": "human", "value": "<image>\n" + question(rng, scene, kind)}],
                              "chosen": scene.answer(kind), "rejected": wrong_answer(rng, scene, kind),
                              "question_type": kind})
    return write_splits(Path(out_dir), splits)


def one_question_per_image(out: Path, rng: random.Random, counts: dict[str, int], size: int):
    """(split, index, question type, scene, image path) for `counts[split]` new images per split, the question types
    in turn, each scene drawn so its type can be asked: the skeleton of the preference and rl sets."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    types = list(QUESTIONS)
    for split, count in counts.items():
        for i in range(count):
            kind = types[i % len(types)]
            scene, image = _write_image(out, f"{split}_{i:06d}", scene=scene_for(rng, kind), size=size, rng=rng)
            yield split, i, kind, scene, image


def _write_image(out: Path, name: str, *, scene: Scene, size: int, rng: random.Random) -> tuple[Scene, str]:
    rel = f"images/{name}.png"
    draw_scene(scene, size, rng).save(out / rel, compress_level=1)
    return scene, rel


def _llava(rid: str, image: str | None, qa: list[tuple[str, str]]) -> dict:
    conversations = []
    for k, (q, a) in enumerate(qa):
        prefix = "<image>\n" if (k == 0 and image) else ""
        conversations += [{"from": "human", "value": prefix + q}, {"from": "gpt", "value": a}]
    record = {"id": rid}
    if image:
        record["image"] = image
    record["conversations"] = conversations
    return record
