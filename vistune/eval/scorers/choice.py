"""ScienceQA-IMG multiple choice: LLaVA's `eval_science_qa.py` letter parsing (MMBench is in mmbench.py).

The answer is the whole prediction if it is a letter, the first letter of "X. ...", or the single
"The answer is X?" match; otherwise it fails (no random guess).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SQA_OPTIONS = ("A", "B", "C", "D", "E")
_SQA_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def parse_sqa_letter(text: str) -> str:
    """The option letter LLaVA's ScienceQA evaluator reads from a prediction, or 'FAILED'."""
    if text in SQA_OPTIONS:
        return text
    if len(text) >= 3 and text[0] in SQA_OPTIONS and text[1:3] == ". ":
        return text[0]
    found = _SQA_ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


def score_sqa_rows(rows: Sequence[dict]) -> dict[str, float]:
    """Accuracy (percent) overall and on questions with an image (`has_image`, the SQA-IMG number).

    Each row: `prediction`, `answer` (the gold letter, or the gold option index as an int) and optionally
    `num_choices` (a parsed letter beyond the choices counts as wrong) and `has_image`.
    """
    correct = total = img_correct = img_total = 0
    for row in rows:
        gold = row["answer"]
        gold = SQA_OPTIONS[gold] if isinstance(gold, int) else str(gold)
        letter = parse_sqa_letter(row.get("prediction") or "")
        n = int(row.get("num_choices") or len(SQA_OPTIONS))
        ok = letter in SQA_OPTIONS[:n] and letter == gold
        total += 1
        correct += ok
        if row.get("has_image", True):
            img_total += 1
            img_correct += ok
    return {
        "img_accuracy": 100 * img_correct / img_total if img_total else 0.0,
        "accuracy": 100 * correct / total if total else 0.0,
        "count": total,
        "img_count": img_total,
    }
