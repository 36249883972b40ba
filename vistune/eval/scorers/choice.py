"""Multiple-choice scoring: ScienceQA-IMG letter parsing and MMBench circular evaluation.

ScienceQA follows LLaVA's `eval_science_qa.py`: the answer is the whole prediction if it is a letter, the
first letter of "X. ...", or the single "The answer is X?" match; otherwise it fails (no random guess).
MMBench follows the rule-based matcher of VLMEvalKit / OpenCompass as of LLaVA-1.5's submissions (2023,
`can_infer`): a lone option letter among the words, else a unique option text inside the answer. A question counts under circular evaluation only if every
rotation of its options is answered correctly.
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


# --- MMBench ------------------------------------------------------------------------------------------

_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)


def infer_option_letter(answer: str, choices: Sequence[str]) -> str | None:
    """VLMEvalKit `can_infer_option`: the only option letter standing alone among the words ('Z' = refusal)."""
    for refusal in _REFUSALS:
        if refusal in answer:
            return "Z"
    cleaned = answer
    for c in ".()[],:;!*#{}":
        cleaned = cleaned.replace(c, " ")
    words = [w.strip() for w in cleaned.split()]
    found = [c for c in choices if c in words]
    if len(found) == 1:
        return found[0]
    if not found and sum(1 for c in ("Z", "") if c in words) == 1:
        return "Z"
    return None


def infer_option_text(answer: str, options: dict[str, str]) -> str | None:
    """VLMEvalKit `can_infer_text`: the only option whose text (lower-cased) occurs in the answer."""
    answer = answer.lower()
    found = [k for k, v in options.items() if str(v).lower() in answer]
    return found[0] if len(found) == 1 else None


def parse_mmbench_choice(answer: str, options: dict[str, str]) -> str | None:
    """VLMEvalKit `can_infer`: letter first, then option text; None when the rules cannot decide.

    VLMEvalKit then asks a GPT judge, or (with no judge) picks a random option; here that case is wrong.
    """
    return infer_option_letter(str(answer), list(options)) or infer_option_text(str(answer), options)


def score_mmbench_rows(rows: Sequence[dict]) -> dict[str, float]:
    """Circular accuracy (percent): a question is right only if all its rotations are right.

    Each row: `question_id` (unique per line), `index` (the original question, shared by its rotations;
    default: the question_id), `prediction`, `options` (letter -> text as shown in that rotation),
    `answer` (the gold letter in that rotation), optionally `round` and `category`.
    `single_accuracy` scores round 0 alone, as a plain (non-circular) benchmark would.
    """
    questions: dict[str, bool] = {}
    categories: dict[str, str] = {}
    single = []
    for row in rows:
        index = str(row.get("index", row["question_id"]))
        ok = parse_mmbench_choice(row.get("prediction") or "", dict(row["options"])) == str(row["answer"])
        questions[index] = questions.get(index, True) and ok
        if int(row.get("round", 0)) == 0:
            single.append(ok)
        if row.get("category"):
            categories[index] = str(row["category"])
    n = len(questions)
    metrics: dict[str, float] = {
        "circular_accuracy": 100 * sum(questions.values()) / n if n else 0.0,
        "single_accuracy": 100 * sum(single) / len(single) if single else 0.0,
        "count": n,
    }
    per_category: dict[str, list[bool]] = {}
    for index, ok in questions.items():
        if index in categories:
            per_category.setdefault(categories[index], []).append(ok)
    for name, oks in sorted(per_category.items()):
        metrics[f"circular_accuracy/{name}"] = 100 * sum(oks) / len(oks)
    return metrics
