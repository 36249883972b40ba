"""MMBench: each VLMEvalKit matcher version on tricky answers, circular evaluation, the rule as a CLI setting.

Every expected value below was also checked against VLMEvalKit's own `can_infer` at the commits docs/eval.md names.
"""

import json

import pytest

from vistune.cli import main
from vistune.eval.scorers import DEFAULT_MMBENCH_RULE, MMBENCH_RULES, parse_mmbench_choice, score_mmbench_rows

OPTIONS = {"A": "cat", "B": "dog", "C": "bird", "D": "fish"}  # 14 characters: answers over 28 get no text match
RULES = ("2026-06", "2025-08", "2024-02")

# answer -> what each rule reads, in the order of RULES (None: undecided, counted wrong)
TABLE = [
    # plain letters, in any of the separators VLMEvalKit strips
    ("A", ("A", "A", "A")),
    ("(B) cat", ("B", "B", "B")),  # the letter wins over another option's text
    ("The answer is C.", ("C", "C", "C")),
    ("Answer: C", ("C", "C", "C")),
    ("**C**", ("C", "C", "C")),
    ("{A}", ("A", "A", "A")),
    ("D. fish", ("D", "D", "D")),
    ("A dog", ("A", "A", "A")),  # a letter first, even against the text
    # where the rules differ
    ("the answer is c", ("C", None, None)),  # 2026-06: "answer is x" in any case
    ("Either A or B, but the answer is B", ("B", None, None)),  # two letters; 2026-06 reads "answer is B"
    ("The correct answer is **B**. Here's why: a dog barks.", ("B", None, "B")),  # B is the 5th of 10 words
    ("A is correct because the animal has whiskers", (None, None, "A")),  # the letter is not among the last four
    ("B is my pick now", (None, None, "B")),  # 5 words: index 0 is one too early
    ("B is my pick", ("B", "B", "B")),  # 4 words: index 0 is among the last four
    ("I pick option B now", ("B", "B", "B")),
    ("B, definitely B, final answer B", (None, None, "B")),  # the FIRST occurrence counts
    ("It is a dog, as you can see from the long floppy ears and the wagging tail", (None, None, "B")),  # > 28
    ("answer is bird", ("B", "C", "C")),  # 2026-06 takes the b of "bird" for the letter B
    ("Failed to obtain answer via API: dog", (None, None, "B")),  # no letter read; text only, 36 > 28
    # the same under every rule
    ("It is a dog", ("B", "B", "B")),  # "a" is no letter; the option text decides
    ("Dog.", ("B", "B", "B")),
    ("DOG", ("B", "B", "B")),
    ("A or B", (None, None, None)),
    ("Option B is wrong, A is right", (None, None, None)),
    ("a cat or a dog", (None, None, None)),  # two option texts
    ("A、B", (None, None, None)),  # Chinese punctuation is no separator
    ("答案是C。", (None, None, None)),
    ("（C）", (None, None, None)),
    ("答案是 C", ("C", "C", "C")),
    ("C\u3000鸟", ("C", "C", "C")),  # the ideographic space separates words
    ("I don't know", (None, None, None)),
    ("The answer is E", (None, None, None)),  # E is no option
    ("Failed to obtain answer via API. A", (None, None, None)),
    ("Cannot determine the answer", ("Z", "Z", "Z")),  # a refusal: Z, never right
    ("Z", ("Z", "Z", "Z")),
    ("a", (None, None, None)),
    ("", (None, None, None)),
]


@pytest.mark.parametrize("answer, expected", TABLE, ids=[repr(a)[:40] for a, _ in TABLE])
def test_matcher_table(answer, expected):
    got = tuple(parse_mmbench_choice(answer, dict(OPTIONS), rule) for rule in RULES)
    assert got == expected


def test_rules_known_and_default_is_current():
    assert set(MMBENCH_RULES) == set(RULES)
    assert DEFAULT_MMBENCH_RULE == "2026-06"
    assert parse_mmbench_choice("the answer is c", OPTIONS) == "C"
    with pytest.raises(ValueError, match="unknown MMBench rule"):
        parse_mmbench_choice("A", OPTIONS, "2023")


def test_answer_is_needs_an_offered_letter():
    three = {"A": "red", "B": "blue", "C": "green"}
    assert parse_mmbench_choice("The answer is D", three) is None
    assert parse_mmbench_choice("the answer is b", three) == "B"


def _rotations(index, answers, gold=0):
    letters = "ABCD"
    texts = list(OPTIONS.values())
    rows = []
    for k, pred in enumerate(answers):
        rotated = texts[k:] + texts[:k]
        rows.append({
            "question_id": f"{index}/{k}", "index": index, "round": k, "prediction": pred,
            "options": dict(zip(letters, rotated, strict=True)), "answer": letters[(gold - k) % 4],
            "category": "animals",
        })
    return rows


def test_circular():
    # gold "cat" sits at A, D, C, B in rotations 0..3
    all_right = _rotations(1, ["A", "D", "C", "B"])
    one_wrong = _rotations(2, ["A", "D", "C", "A"])
    m = score_mmbench_rows(all_right + one_wrong)
    assert m["circular_accuracy"] == 50.0
    assert m["single_accuracy"] == 100.0
    assert m["circular_accuracy/animals"] == 50.0
    assert m["count"] == 2


def _rule_sensitive_rows():
    # question 1 is right under 2026-06 only (lower-case "answer is"), question 2 under 2024-02 only (early letter)
    q1 = _rotations(1, ["the answer is a", "D", "C", "B"])
    q2 = _rotations(2, ["A is correct because the animal has whiskers", "D", "C", "B"])
    return q1 + q2


def test_circular_by_rule():
    rows = _rule_sensitive_rows()
    assert score_mmbench_rows(rows)["circular_accuracy"] == 50.0
    assert score_mmbench_rows(rows, rule="2025-08")["circular_accuracy"] == 0.0
    assert score_mmbench_rows(rows, rule="2024-02")["circular_accuracy"] == 50.0
    assert score_mmbench_rows(rows, rule="2024-02")["single_accuracy"] == 50.0


def test_cli_rule_flag(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in _rule_sensitive_rows()))
    for flag, rule, acc in (([], "2026-06", 50.0), (["--mmbench-rule", "2025-08"], "2025-08", 0.0)):
        out = tmp_path / f"{rule}.json"
        assert main(["eval", "score", "--benchmark", "mmbench", "--predictions", str(preds), "--out", str(out),
                     *flag]) == 0
        result = json.loads(out.read_text())
        assert result["metrics"]["circular_accuracy"] == acc
        assert result["score_settings"] == {"rule": rule}
    capsys.readouterr()
    assert main(["eval", "score", "--benchmark", "pope", "--predictions", str(preds),
                 "--mmbench-rule", "2024-02"]) == 2
    assert "--mmbench-rule applies to --benchmark mmbench" in capsys.readouterr().err
