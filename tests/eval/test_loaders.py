"""Benchmark loaders: standard file layouts -> questions with the LLaVA-1.5 suffix and the scorer's fields."""

import base64
import io
import json

from PIL import Image

from vistune.eval.benchmarks import BENCHMARKS
from vistune.eval.loaders import LETTER_ANSWER, SHORT_ANSWER


def test_pope_folder(tmp_path):
    for cat in ("random", "adversarial"):
        rows = [{"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "label": "yes"}]
        (tmp_path / f"coco_pope_{cat}.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = BENCHMARKS["pope"].load(tmp_path)
    assert [i.question_id for i in items] == ["adversarial/1", "random/1"]
    assert items[0].prompt == "Is there a dog in the image?\n" + SHORT_ANSWER
    assert items[0].reference == {"label": "yes", "category": "adversarial"}


def test_sqa_conversation_form(tmp_path):
    data = [{"id": "7", "image": "7.png", "conversations": [
        {"from": "human", "value": "<image>\nContext: x\nQuestion: Which?\nOptions: (A) a (B) b (C) c"},
        {"from": "gpt", "value": "C"}]},
        {"id": "8", "conversations": [{"from": "human", "value": "Question: Q\nOptions: (A) a (B) b"},
                                      {"from": "gpt", "value": "The answer is B."}]}]
    (tmp_path / "sqa.json").write_text(json.dumps(data))
    a, b = BENCHMARKS["sqa"].load(tmp_path / "sqa.json")
    assert a.prompt.endswith("(C) c\n" + LETTER_ANSWER) and "<image>" not in a.prompt
    assert a.reference == {"answer": "C", "has_image": True, "num_choices": 3}
    assert b.reference == {"answer": "B", "has_image": False, "num_choices": 2}


def test_mmbench_rotations(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    img = base64.b64encode(buf.getvalue()).decode()
    header = "index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\n"
    (tmp_path / "mmb.tsv").write_text(header + f"5\tWhat animal?\tnan\tcat\tdog\tbird\tfish\tB\tanimals\t{img}\n")
    items = BENCHMARKS["mmbench"].load(tmp_path / "mmb.tsv")
    assert [i.question_id for i in items] == ["5/0", "5/1", "5/2", "5/3"]
    assert items[0].prompt == "What animal?\nA. cat\nB. dog\nC. bird\nD. fish\n" + LETTER_ANSWER
    # "dog" moves to A in round 1, D in round 2, C in round 3
    assert [i.reference["answer"] for i in items] == ["B", "A", "D", "C"]
    assert [i.reference["options"][i.reference["answer"]] for i in items] == ["dog"] * 4
    assert items[1].image_b64 == img


def test_mme_folder(tmp_path):
    task = tmp_path / "existence"
    task.mkdir()
    Image.new("RGB", (4, 4)).save(task / "001.jpg")
    (task / "001.txt").write_text("Is there a car?\tYes\nIs there a boat?\tNo\n")
    items = BENCHMARKS["mme"].load(tmp_path)
    assert [i.reference["answer"] for i in items] == ["Yes", "No"]
    assert items[0].image == "existence/001.jpg" and items[0].reference["category"] == "existence"
    assert items[0].prompt == "Is there a car?"  # MME questions already say how to answer


def test_textvqa_and_gqa_official_layouts(tmp_path):
    (tmp_path / "tv.json").write_text(json.dumps({"data": [
        {"question_id": 3, "image_id": "abc", "question": "what brand?", "answers": ["nike"] * 10}]}))
    (item,) = BENCHMARKS["textvqa"].load(tmp_path / "tv.json")
    assert item.image == "abc.jpg" and item.reference == {"answers": ["nike"] * 10}
    (tmp_path / "gqa.json").write_text(json.dumps({"201": {"imageId": "n1", "question": "Is it red?",
                                                           "answer": "yes"}}))
    (item,) = BENCHMARKS["gqa"].load(tmp_path / "gqa.json")
    assert (item.question_id, item.image, item.reference) == ("201", "n1.jpg", {"answer": "yes"})
