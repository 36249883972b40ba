"""Synthetic questions with exact answers for stage rl: the shapes world (vistune.data_prep.synth.shapes), new images.

`rl.json` and `rl_heldout.json` are LLaVA JSON whose last assistant turn is the reference answer, with
`question_type` and `answer` fields: the same format as `heldout.json`, so `vistune eval run --benchmark shapes`
scores the held-out file, and stage rl reads the training file (the `exact` reward checks the answer).
"""

from __future__ import annotations

import random
from pathlib import Path

from vistune.data_prep.synth.shapes import _llava, one_question_per_image, question, write_splits


def synthesize_rl(out_dir: str | Path, n: int = 400, seed: int = 2, *, n_heldout: int = 200,
                  image_size: int = 64) -> dict[str, Path]:
    """Writes rl.json (n questions) and rl_heldout.json (n_heldout), one question per new image, the question
    types in turn (colour, shape, count, position)."""
    rng = random.Random(seed)
    out = Path(out_dir)
    splits = {"rl": [], "rl_heldout": []}
    for split, i, kind, scene, image in one_question_per_image(out, rng, {"rl": n, "rl_heldout": n_heldout}, image_size):
        record = _llava(f"{split}-{i}", image, [(question(rng, scene, kind), scene.answer(kind))])
        splits[split].append({**record, "question_type": kind, "answer": scene.answer(kind)})
    return write_splits(out, splits)
