"""MME perception / cognition scores as the benchmark's own `calculation.py` computes them.

Each image carries two yes/no questions. Per subtask, score = accuracy + accuracy+ (both in percent:
accuracy over questions, accuracy+ over images with both questions right); perception sums 10 subtasks
(max 2000) and cognition 4 (max 800). Answers are lower-cased, then read as yes/no from their first 4
characters; anything else is "other" and counts as wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def parse_mme_answer(text: str) -> str:
    """'yes', 'no' or 'other', as calculation.py's parse_pred_ans reads a lower-cased answer."""
    text = text.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def subtask_score(rows: Sequence[dict]) -> dict[str, float]:
    """accuracy, accuracy+ and their sum for one subtask; rows grouped into images by `image`."""
    images: dict[str, list[bool]] = {}
    for row in rows:
        ok = parse_mme_answer(row.get("prediction") or "") == str(row["answer"]).lower()
        images.setdefault(str(row["image"]), []).append(ok)
    flat = [ok for oks in images.values() for ok in oks]
    acc = 100 * sum(flat) / len(flat) if flat else 0.0
    acc_plus = 100 * sum(1 for oks in images.values() if all(oks)) / len(images) if images else 0.0
    return {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus}


def score_mme_rows(rows: Sequence[dict]) -> dict[str, float]:
    """Perception and cognition totals plus each subtask's score; rows need `category`, `image`, `answer`."""
    by_task: dict[str, list[dict]] = {}
    for row in rows:
        by_task.setdefault(str(row["category"]), []).append(row)
    metrics: dict[str, float] = {"perception": 0.0, "cognition": 0.0}
    for task, group in sorted(by_task.items()):
        score = subtask_score(group)["score"]
        metrics[f"score/{task}"] = score
        if task in PERCEPTION:
            metrics["perception"] += score
        elif task in COGNITION:
            metrics["cognition"] += score
    metrics["count"] = len(rows)
    return metrics
