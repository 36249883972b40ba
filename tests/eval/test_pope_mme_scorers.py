"""POPE (eval_pope.py parsing) and MME (calculation.py) on hand-made answers."""

import pytest

from vistune.eval.scorers import (
    binary_metrics,
    parse_mme_answer,
    parse_yes_no,
    score_mme_rows,
    score_pope_rows,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes.", "yes"),
        ("yes", "yes"),
        ("No", "no"),
        ("no.", "no"),
        ("No, there is not.", "no"),
        ("There is no dog in the image.", "no"),
        ("Yes, but not clearly", "no"),  # "not" anywhere in the first sentence
        ("Yes. It is not a cat.", "yes"),  # only the first sentence counts
        ("NO", "yes"),  # only "No", "no" and "not" are read as no
        ("", "yes"),  # an empty answer counts as yes
    ],
)
def test_pope_parsing(text, expected):
    assert parse_yes_no(text) == expected


def test_pope_metrics_by_hand():
    # parsed [yes, yes, yes, no] vs [yes, yes, no, no]: TP 2, FP 1, TN 1, FN 0
    m = binary_metrics(["Yes.", "yes", "Yes", "No."], ["yes", "yes", "no", "no"])
    assert m["accuracy"] == pytest.approx(75.0)
    assert m["precision"] == pytest.approx(200 / 3)
    assert m["recall"] == pytest.approx(100.0)
    assert m["f1"] == pytest.approx(80.0)  # 2 * (2/3) * 1 / (2/3 + 1)
    assert m["yes_ratio"] == pytest.approx(75.0)


def test_pope_f1_is_mean_over_categories():
    rows = [
        {"question_id": 1, "prediction": "Yes", "label": "yes", "category": "random"},
        {"question_id": 2, "prediction": "No", "label": "no", "category": "random"},
        {"question_id": 3, "prediction": "Yes", "label": "yes", "category": "adversarial"},
        {"question_id": 4, "prediction": "Yes", "label": "no", "category": "adversarial"},
    ]
    m = score_pope_rows(rows)
    assert m["random/f1"] == 100.0
    assert m["adversarial/f1"] == pytest.approx(100 * 2 * 0.5 * 1 / 1.5)
    assert m["f1"] == pytest.approx((100 + 200 / 3) / 2)
    assert m["all/accuracy"] == 75.0


def test_pope_no_yes_predictions_gives_zero_precision():
    assert binary_metrics(["no", "no"], ["yes", "no"])["precision"] == 0.0


@pytest.mark.parametrize(
    "text, expected",
    [("Yes", "yes"), ("No.", "no"), ("yes, there is", "yes"), ("Not sure", "no"), ("I think yes", "other"),
     ("", "other")],
)
def test_mme_parsing(text, expected):
    assert parse_mme_answer(text) == expected


def test_mme_scores_by_hand():
    rows = [
        # existence, image 1: both right; image 2: one wrong -> acc 75, acc+ 50 -> 125
        {"question_id": "e1a", "prediction": "Yes", "answer": "Yes", "category": "existence", "image": "1.jpg"},
        {"question_id": "e1b", "prediction": "No", "answer": "No", "category": "existence", "image": "1.jpg"},
        {"question_id": "e2a", "prediction": "Yes", "answer": "No", "category": "existence", "image": "2.jpg"},
        {"question_id": "e2b", "prediction": "yes.", "answer": "Yes", "category": "existence", "image": "2.jpg"},
        # code_reasoning: both right -> 100 + 100
        {"question_id": "c1a", "prediction": "no", "answer": "No", "category": "code_reasoning", "image": "x.png"},
        {"question_id": "c1b", "prediction": "Yes", "answer": "Yes", "category": "code_reasoning", "image": "x.png"},
    ]
    m = score_mme_rows(rows)
    assert m["score/existence"] == pytest.approx(125.0)
    assert m["perception"] == pytest.approx(125.0)
    assert m["cognition"] == pytest.approx(200.0)
