"""MMBench: VLMEvalKit's rule-based answer matcher (`can_infer`) in each of its versions; circular scoring.

A question counts under circular evaluation only if every rotation of its options is read as the right letter.
The matcher changed twice; each version is a named `MatchRule` (docs/eval.md gives the VLMEvalKit commits):
`2026-06` (the default, current VLMEvalKit), `2025-08`, and `2024-02` (in force until August 2025).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MatchRule:
    """Which of VLMEvalKit's later changes to `can_infer_option` / `can_infer_text` apply."""

    letter_near_end: bool  # a lone letter counts only if it first occurs among the answer's last four words
    text_length_cap: bool  # option texts are matched only in answers at most twice the options' total length
    answer_is: bool  # else read "answer is X" (any case, X in A-D), also when several letters stand alone


MMBENCH_RULES: dict[str, MatchRule] = {
    "2026-06": MatchRule(letter_near_end=True, text_length_cap=True, answer_is=True),
    "2025-08": MatchRule(letter_near_end=True, text_length_cap=True, answer_is=False),
    "2024-02": MatchRule(letter_near_end=False, text_length_cap=False, answer_is=False),
}
DEFAULT_MMBENCH_RULE = "2026-06"
Rule = str | MatchRule  # a rule's name or the rule

_API_FAILURE = "Failed to obtain answer via API"  # a judge's error text: no letter; option texts are tried
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
_ANSWER_IS = re.compile(r"answer\s+is\s+\**([a-d])", re.IGNORECASE)


def get_rule(rule: Rule) -> MatchRule:
    if isinstance(rule, MatchRule):
        return rule
    try:
        return MMBENCH_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown MMBench rule {rule!r}; known: {', '.join(MMBENCH_RULES)}") from None


def infer_option_letter(answer: str, letters: Sequence[str], rule: Rule = DEFAULT_MMBENCH_RULE) -> str | None:
    """`can_infer_option`: the one option letter standing alone among the words ('Z' = a refusal), or None."""
    rule = get_rule(rule)
    if _API_FAILURE in answer:
        return None
    if any(refusal in answer for refusal in _REFUSALS):
        return "Z"
    words = answer.translate(_SEPARATORS).split()
    found = [c for c in letters if c in words]
    if len(found) == 1:
        letter = found[0]
        # words.index is the first occurrence; "last four" because VLMEvalKit tests index > len - 5
        if not rule.letter_near_end or words.index(letter) >= len(words) - 4:
            return letter
    elif not found and "Z" in words:
        return "Z"
    if rule.answer_is:
        match = _ANSWER_IS.search(answer)  # only the first "answer is", as VLMEvalKit
        if match and match.group(1).upper() in letters:
            return match.group(1).upper()
    return None


def infer_option_text(answer: str, options: dict[str, str], rule: Rule = DEFAULT_MMBENCH_RULE) -> str | None:
    """`can_infer_text`: the one option whose text (lower-cased) occurs in the lower-cased answer, or None."""
    lowered = answer.lower()
    if get_rule(rule).text_length_cap and len(lowered) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    found = [k for k, v in options.items() if str(v).lower() in lowered]
    return found[0] if len(found) == 1 else None


def parse_mmbench_choice(answer: str, options: dict[str, str],
                         rule: Rule = DEFAULT_MMBENCH_RULE) -> str | None:
    """`can_infer`: the letter first, then the option text; None when the rules cannot decide.

    VLMEvalKit then asks a GPT judge if one is configured; without one (`exact_matching`) the answer is wrong,
    as it is here.
    """
    answer = str(answer)
    return infer_option_letter(answer, list(options), rule) or infer_option_text(answer, options, rule)


def score_mmbench_rows(rows: Sequence[dict], rule: str = DEFAULT_MMBENCH_RULE) -> dict[str, float]:
    """Circular accuracy (percent): a question is right only if all its rotations are right.

    Each row: `question_id` (unique per line), `index` (the original question, shared by its rotations;
    default: the question_id), `prediction`, `options` (letter -> text as shown in that rotation),
    `answer` (the gold letter in that rotation), optionally `round` and `category`.
    `single_accuracy` scores round 0 alone, as a plain (non-circular) benchmark would.
    `rule` names the matcher version (MMBENCH_RULES).
    """
    match_rule = get_rule(rule)
    questions: dict[str, bool] = {}
    categories: dict[str, str] = {}
    single = []
    for row in rows:
        index = str(row.get("index", row["question_id"]))
        read = parse_mmbench_choice(row.get("prediction") or "", dict(row["options"]), match_rule)
        ok = read == str(row["answer"])
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
