"""ScienceQA letter parsing, GQA and shapes exact match (MMBench: test_mmbench_scorer.py)."""

import pytest

from vistune.eval.scorers import (
    parse_sqa_letter,
    score_gqa_rows,
    score_shapes_rows,
    score_sqa_rows,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A", "A"),
        ("A. Paris", "A"),
        ("The answer is A.", "A"),
        ("Because ... The answer is C!", "C"),  # any character may follow the letter
        ("(A)", "FAILED"),  # LLaVA's ScienceQA evaluator reads no parentheses
        ("A.", "FAILED"),  # "X. " needs the space
        ("The answer is A", "FAILED"),  # the pattern needs one more character after the letter
        ("The answer is B. The answer is C.", "FAILED"),  # two matches
        (" A", "FAILED"),  # no stripping
        ("a", "FAILED"),
        ("", "FAILED"),
    ],
)
def test_sqa_letter(text, expected):
    assert parse_sqa_letter(text) == expected


def test_sqa_img_accuracy():
    rows = [
        {"question_id": "1", "prediction": "A", "answer": "A", "has_image": True},
        {"question_id": "2", "prediction": "(B)", "answer": "B", "has_image": True},
        {"question_id": "3", "prediction": "C", "answer": 2, "has_image": False},  # gold as an index
        {"question_id": "4", "prediction": "E", "answer": "E", "num_choices": 4, "has_image": True},  # out of range
    ]
    m = score_sqa_rows(rows)
    assert m["img_accuracy"] == pytest.approx(100 / 3)
    assert m["accuracy"] == pytest.approx(50.0)


def test_gqa_exact():
    rows = [
        {"question_id": "1", "prediction": "Yes.", "answer": "yes"},
        {"question_id": "2", "prediction": "The red one.", "answer": "red"},
        {"question_id": "3", "prediction": "Left", "answer": "left"},
        {"question_id": "4", "prediction": "", "answer": "no"},
    ]
    assert score_gqa_rows(rows)["accuracy"] == 50.0


def test_shapes_per_type_with_chance():
    rows = [
        {"question_id": "1", "prediction": "Red.", "answer": "red", "question_type": "color"},
        {"question_id": "2", "prediction": "green", "answer": "blue", "question_type": "color"},
        {"question_id": "3", "prediction": "2", "answer": "2", "question_type": "count"},
        {"question_id": "4", "prediction": "two", "answer": "3", "question_type": "count"},
        {"question_id": "5", "prediction": "4\nmore text", "answer": "4", "question_type": "count"},
    ]
    m = score_shapes_rows(rows)
    assert m["accuracy"] == pytest.approx(60.0)
    assert m["accuracy/color"] == pytest.approx(50.0)
    assert m["accuracy/count"] == pytest.approx(200 / 3)
    assert m["chance/color"] == pytest.approx(50.0)
    assert m["chance/count"] == pytest.approx(100 / 3)
    assert m["chance"] == pytest.approx((2 * 50 + 3 * 100 / 3) / 5)
