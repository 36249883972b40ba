"""Synthetic questions with exact answers for stage rl: the shapes world (vistune.data_prep.synth.shapes), new images.

`rl.json` and `rl_heldout.json` are LLaVA JSON whose last assistant turn is the reference answer, with
`question_type` and `answer` fields: the same format as `heldout.json`, so `vistune eval run --benchmark shapes`
scores the held-out file, and stage rl reads the training file (the `exact` reward checks the answer).
"""

from __future__ import annotations

import random
from pathlib import Path

from vistune.data_prep.synth.shapes import QUESTIONS, _llava, _write_image, question, scene_for, write_splits


def synthesize_rl(out_dir: str | Path, n: int = 400, seed: int = 2, *, n_heldout: int = 200,
                  image_size: int = 64) -> dict[str, Path]:
    """Writes rl.json (n questions) and rl_heldout.json (n_heldout), one question per new image, the question
    types in turn (colour, shape, count, position)."""
    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    types = list(QUESTIONS)
    splits = {}
    for split, count in (("rl", n), ("rl_heldout", n_heldout)):
        rows = []
        for i in range(count):
            kind = types[i % len(types)]
            scene, image = _write_image(out, f"{split}_{i:06d}", scene=scene_for(rng, kind), size=image_size, rng=rng)
            record = _llava(f"{split}-{i}", image, [(question(rng, scene, kind), scene.answer(kind))])
            rows.append({**record, "question_type": kind, "answer": scene.answer(kind)})
        splits[split] = rows
    return write_splits(out, splits)
