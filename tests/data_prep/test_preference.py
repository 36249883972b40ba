"""Preference pairs: the readers (LLaVA JSON, prompt strings, RLAIF-V rows, HF dirs), stage-2 masking of the final
reply only, and the bad kinds the doctor names."""

from __future__ import annotations

import json

import pytest

from vistune import IGNORE_INDEX
from vistune.data_prep import SkipLog, get_template, tokenize_record
from vistune.data_prep.batching.preference import load_pairs, tokenize_pairs

GOOD = {"id": "g", "image": "a.png", "conversations": [
    {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"},
    {"from": "human", "value": "And the shape?"}], "chosen": "circle", "rejected": "square"}


@pytest.fixture()
def text_side(tiny_parts):
    from vistune.data_prep.text.text_side import load_text_side

    return load_text_side("tiny")


def test_readers_agree_on_the_pair(tmp_path):
    rows = [
        GOOD,
        {"id": "p", "image": "a.png", "prompt": "What colour?", "chosen": "red", "rejected": "blue"},
        {"idx": "r", "image": "a.png", "question": "What colour?", "chosen": "red", "rejected": "blue",
         "ds_name": "x", "origin_dataset": "y"},  # an RLAIF-V row: no <image> tag, images at the front
        {"id": "m", "images": ["a.png"], "messages": [{"role": "user", "content": "<image>\nWhat colour?"}],
         "chosen": [{"role": "assistant", "content": "red"}], "rejected": [{"role": "assistant", "content": "blue"}]},
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    skips = SkipLog()
    pairs = load_pairs(tmp_path / "pairs.jsonl", skips=skips)
    assert len(skips) == 0 and [p.id for p in pairs] == ["g", "p", "r", "m"]
    for p in pairs:
        assert p.images == ["a.png"]
        assert p.chosen.turns[:-1] == p.rejected.turns[:-1] and p.chosen.turns[-1].role == "assistant"
    assert [t.text for t in pairs[0].chosen.turns] == ["What colour?", "red", "And the shape?", "circle"]
    assert pairs[1].chosen.turns[0].text == pairs[2].chosen.turns[0].text == pairs[3].chosen.turns[0].text


def test_hf_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "red.png")
    image = {"bytes": (tmp_path / "red.png").read_bytes(), "path": "red.png"}
    table = pa.Table.from_pylist([{"ds_name": "d", "image": image, "question": "Colour?", "chosen": "red",
                                   "rejected": "blue", "idx": "7"}])
    (tmp_path / "hf").mkdir()
    pq.write_table(table, tmp_path / "hf" / "train-0.parquet")
    (pair,) = load_pairs(tmp_path / "hf")
    assert pair.id == "7" and pair.image_root and len(pair.images) == 1


def test_only_the_final_reply_is_scored_as_stage_2_masks_it(text_side):
    from vistune.data_prep.batching.preference import parse_pair

    pair = parse_pair(GOOD, 0)
    template = get_template("vicuna_v1")
    (_, tok), = tokenize_pairs([pair], text_side.tokenizer, template, num_image_tokens=4, max_length=256)
    stage2 = tokenize_record(pair.chosen, text_side.tokenizer, template, num_image_tokens=4, max_length=256)
    assert tok.chosen_ids == stage2.input_ids
    scored = [i for i, m in zip(tok.chosen_ids, tok.chosen_mask, strict=True) if m]
    supervised = [x for x in stage2.labels if x != IGNORE_INDEX]
    assert scored == supervised[-len(scored):] and len(scored) < len(supervised)  # "red</s>" is not scored
    assert text_side.tokenizer.decode(scored).replace(" ", "").startswith("circle")
    assert scored[-1] == text_side.tokenizer.eos_token_id
    first = tok.chosen_mask.index(1)
    assert tok.chosen_ids[:first] == tok.rejected_ids[:first]  # the same prompt


def bad_rows(long_text: str) -> dict[str, dict]:
    """One record per bad kind the prefer stage names, keyed by the problem code."""
    return {
        "empty_chosen": {**GOOD, "id": "no-chosen", "chosen": None},
        "empty_rejected": {**GOOD, "id": "blank-rejected", "rejected": "  "},
        "same_replies": {**GOOD, "id": "same", "rejected": "circle"},
        "image_tag_mismatch": {**GOOD, "id": "tags", "image": ["a.png", "a.png"]},
        "too_long": {**GOOD, "id": "long", "chosen": long_text},
    }


def test_doctor_names_every_bad_kind_and_nothing_else(tmp_path, text_side):
    from PIL import Image

    from vistune.data_prep.doctor import diagnose

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    bad = bad_rows("word " * 300)
    rows = [{**GOOD, "id": f"good{i}"} for i in range(3)] + list(bad.values())
    (tmp_path / "pairs.json").write_text(json.dumps(rows))
    report = diagnose(tmp_path / "pairs.json", text_side=text_side, template="vicuna_v1", max_length=128)
    named = {s.id: s.problem for s in report.errors}
    assert named == {row["id"]: problem for problem, row in bad.items()}
    assert len(report.good) == 3
