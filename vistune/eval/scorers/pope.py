"""POPE object-hallucination metrics with LLaVA's `eval_pope.py` answer parsing.

POPE asks "Is there a <object> in the image?" with yes/no labels. The reference keeps the first sentence of
the answer, drops commas and calls it "no" when the words contain "No", "no" or "not"; anything else,
including an empty answer, counts as "yes". Metrics are computed per category (adversarial / popular /
random) and LLaVA's published POPE number is the F1 averaged over the three.
"""

from __future__ import annotations

from collections.abc import Sequence


def parse_yes_no(text: str) -> str:
    """'yes' or 'no', exactly as eval_pope.py decides it."""
    if text.find(".") != -1:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def binary_metrics(predictions: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and yes-ratio (percent) of parsed answers against 'yes'/'no' labels.

    The reference divides by zero when nothing is predicted "yes"; here precision (and F1) are 0 then.
    """
    preds = [1 if parse_yes_no(p) == "yes" else 0 for p in predictions]
    gold = [0 if label == "no" else 1 for label in labels]
    pairs = list(zip(preds, gold, strict=True))
    tp, fp = pairs.count((1, 1)), pairs.count((1, 0))
    tn, fn = pairs.count((0, 0)), pairs.count((0, 1))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(preds)
    return {
        "accuracy": 100 * (tp + tn) / n if n else 0.0,
        "precision": 100 * precision,
        "recall": 100 * recall,
        "f1": 100 * f1,
        "yes_ratio": 100 * sum(preds) / n if n else 0.0,
        "count": n,
    }


def score_pope_rows(rows: Sequence[dict]) -> dict[str, float]:
    """Metrics over all rows, per `category`, and `f1` = mean F1 over categories when there are several."""
    overall = binary_metrics([r.get("prediction") or "" for r in rows], [r["label"] for r in rows])
    by_category: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("category"):
            by_category.setdefault(str(row["category"]), []).append(row)
    metrics: dict[str, float] = {}
    if len(by_category) > 1:
        f1s = []
        for name, group in sorted(by_category.items()):
            m = binary_metrics([r.get("prediction") or "" for r in group], [r["label"] for r in group])
            f1s.append(m["f1"])
            metrics.update({f"{name}/{k}": v for k, v in m.items()})
        metrics = {"f1": sum(f1s) / len(f1s), **{f"all/{k}": v for k, v in overall.items()}, **metrics}
    else:
        metrics = overall
    return metrics
