"""The synthetic shapes dataset: deterministic, consistent answers, readable by the same path as user data."""

from __future__ import annotations

import json

from vistune.data_prep import SkipLog, load_image, load_records, synthesize
from vistune.data_prep.synth.shapes import COLOURS, SHAPES


def test_synth_files_counts_and_determinism(tmp_path):
    a = synthesize(tmp_path / "a", n=60, seed=1)
    b = synthesize(tmp_path / "b", n=60, seed=1)
    for name in ("align", "instruct", "heldout"):
        assert a[name].read_text() == b[name].read_text()
    assert (tmp_path / "a/images/train_000007.png").read_bytes() == (tmp_path / "b/images/train_000007.png").read_bytes()
    assert synthesize(tmp_path / "c", n=60, seed=2)["instruct"].read_text() != a["instruct"].read_text()
    skips = SkipLog()
    align = load_records(a["align"], skips=skips)
    instruct = load_records(a["instruct"], skips=skips)
    heldout = json.loads(a["heldout"].read_text())
    assert len(skips) == 0 and len(align) == 60 and len(instruct) >= 60 and len(heldout) == 40
    assert any(not r.images for r in instruct) and all(len(r.turns) >= 4 for r in instruct if r.images)
    assert {h["question_type"] for h in heldout} == {"colour", "shape", "count", "position"}
    for h in heldout:
        assert h["answer"] == h["conversations"][1]["value"] and " " not in h["answer"]


def test_answers_match_the_pixels(tmp_path):
    paths = synthesize(tmp_path, n=30, seed=0)
    for h in json.loads(paths["heldout"].read_text()):
        img = load_image(h["image"], tmp_path)
        colours = {c for _, c in img.getcolors(1 << 16)} - {(255, 255, 255)}
        if h["question_type"] == "colour":
            assert COLOURS[h["answer"]] in colours
        if h["question_type"] == "shape":
            assert h["answer"] in SHAPES


def test_every_single_shape_conversation_asks_where(tmp_path):
    """Position is asked of single shapes only; each of their conversations asks it, so it is not the rarest answer."""
    align = json.loads(synthesize(tmp_path, n=80, seed=3)["align"].read_text())
    instruct = {r["id"]: r for r in json.loads((tmp_path / "instruct.json").read_text())}
    for a in align:
        single = a["conversations"][-1]["value"].split()[0] not in ("Two", "Three")
        questions = [t["value"] for t in instruct[a["id"].replace("align", "instruct")]["conversations"][::2]]
        assert any(q.lstrip("<image>\n").startswith("Where") for q in questions) == single


def test_detail_shape_lies_in_one_tower_cell_with_equal_area(tmp_path):
    """The detail task's premise: one AnyRes crop (a tower-sized cell) holds the whole shape, the three kinds have
    the same amount of ink (so a downscaled blob's size does not tell them apart), and each answer is in the image."""
    import random

    import numpy as np

    from vistune.data_prep.synth.detail import draw_small_shape, synthesize_detail

    areas = {}
    for shape in SHAPES:
        for seed in range(20):
            ink = np.argwhere(np.asarray(draw_small_shape("red", shape, 96, 32, 5.0, random.Random(seed))).min(2) < 250)
            assert len({int(x) // 32 for x in ink[:, 1]}) == 1  # one cell of the three
            areas.setdefault(shape, []).append(len(ink))
    means = [np.mean(a) for a in areas.values()]
    assert max(means) / min(means) < 1.1, areas  # equal area (pixel rounding aside)
    paths = synthesize_detail(tmp_path, n=10, n_heldout=12, seed=0)
    heldout = json.loads(paths["heldout"].read_text())
    assert len(heldout) == 12 and {h["question_type"] for h in heldout} == {"shape", "colour"}
    for h in heldout:
        img = load_image(h["image"], tmp_path)
        assert img.size == (96, 32)
        if h["question_type"] == "colour":
            assert COLOURS[h["answer"]] in {c for _, c in img.getcolors(1 << 16)}
