"""VQA accuracy: each normalisation rule of vqaEval.py / the EvalAI processor, numbers worked out by hand."""

import pytest

from vistune.eval.scorers import (
    normalize_evalai,
    normalize_vqa,
    textvqa_accuracy,
    vizwiz_accuracy,
    vqav2_accuracy,
)
from vistune.eval.scorers.vqa import process_punctuation, score_vqa_rows


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("a dog", "dog"),  # articles
        ("The Red Ball", "red ball"),  # articles + lower case
        ("an apple", "apple"),
        ("Yes.", "yes"),  # trailing period
        ("yes!", "yes"),  # "!" not next to a space becomes a space
        ("hot-dog", "hot dog"),
        ("hot - dog", "hot dog"),  # next to a space: removed
        ("1,000", "1000"),  # a digit,digit comma removes every punctuation mark
        ("3.5", "3.5"),  # a period before a digit stays
        ("two", "2"),  # number words
        ("none", "0"),
        ("Ten Dogs", "10 dogs"),
        ("eleven", "eleven"),  # only zero..ten (and none) are mapped
        ("dont", "don't"),  # contractions
        ("isnt it", "isn't it"),
        ("Im", "im"),  # lower-cased before the look-up, so the "Im" entry never fires (as in the reference)
        ("  yes\n", "yes"),
        ("", ""),
    ],
)
def test_normalize_vqa(raw, expected):
    assert normalize_vqa(raw) == expected


def test_evalai_processor():
    assert normalize_evalai("It's the dog's bone!") == "it 's dog 's bone"
    assert normalize_evalai("What?") == "what"
    assert normalize_evalai("1,000 Cats") == "1000 cats"


def test_punctuation_quirks():
    assert process_punctuation("a/b") == "a b"
    assert process_punctuation("a / b") == "a  b"
    assert process_punctuation("e.g. 5.") == "eg 5"


def test_leave_one_out_counts():
    # 3 of 10 annotators said "yes": leaving out a "yes" leaves 2 (2/3), leaving out a "no" leaves 3 (1).
    assert vqav2_accuracy("yes", ["yes"] * 3 + ["no"] * 7) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)
    # 1 of 10: 0 when it is left out, 1/3 otherwise.
    assert vqav2_accuracy("2", ["2"] + ["3"] * 9) == pytest.approx(9 * (1 / 3) / 10)
    assert vqav2_accuracy("two", ["2"] * 2 + ["3"] * 8) == pytest.approx((2 * 1 / 3 + 8 * 2 / 3) / 10)
    assert vqav2_accuracy("Yes.", ["yes"] * 10) == 1.0  # "Yes." vs "yes"
    assert vqav2_accuracy("", ["yes"] * 10) == 0.0  # empty prediction
    assert vqav2_accuracy("The dog", ["dog"] * 10) == 1.0


def test_vqav2_ground_truth_only_cleaned_when_annotators_disagree():
    mixed = ["hot-dog"] * 5 + ["hotdog"] * 5
    assert vqav2_accuracy("hot dog", mixed) == 1.0  # "hot-dog" -> "hot dog" since answers differ
    assert vqav2_accuracy("hot dog", ["hot-dog"] * 10) == 0.0  # unanimous answers are compared raw


def test_textvqa_cleans_both_sides():
    assert textvqa_accuracy("Two", ["two"] * 10) == 1.0
    assert vqav2_accuracy("Two", ["two"] * 10) == 0.0  # vqaEval.py leaves unanimous "two" as is
    assert textvqa_accuracy("STOP!", ["stop"] * 4 + ["go"] * 6) == 1.0


def test_vizwiz_compares_raw_answers():
    assert vizwiz_accuracy("Unanswerable.", ["unanswerable"] * 10) == 1.0
    assert vizwiz_accuracy("unanswerable", ["Unanswerable"] * 10) == 0.0


def test_score_rows_percent_and_answer_types():
    rows = [
        {"question_id": 1, "prediction": "Yes", "answers": ["yes"] * 10, "answer_type": "yes/no"},
        {"question_id": 2, "prediction": "two", "answers": ["2"] * 2 + ["3"] * 8, "answer_type": "number"},
        {"question_id": 3, "prediction": "", "answers": [{"answer": "cat", "answer_id": i} for i in range(10)]},
    ]
    m = score_vqa_rows(rows)
    assert m["accuracy"] == pytest.approx(100 * (1 + 0.6 + 0) / 3)
    assert m["accuracy/yes/no"] == 100.0
    assert m["accuracy/number"] == pytest.approx(60.0)
    assert m["count"] == 3
