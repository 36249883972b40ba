"""Exact-match scoring: GQA (LLaVA's conversion + the official exact comparison) and the synthetic shapes set.

GQA predictions go through LLaVA's `convert_gqa_for_eval.py` (trailing periods stripped, lower-cased) and
are then compared to the gold answer with `==`, as GQA's `eval.py` does. The shapes held-out set is scored
the same way, per `question_type`, with each type's chance level (1 / number of distinct gold answers of
that type, i.e. a uniform guess over the answer vocabulary) alongside.
"""

from __future__ import annotations

from collections.abc import Sequence


def normalize_gqa(text: str) -> str:
    """convert_gqa_for_eval.py: `text.rstrip('.').lower()`."""
    return text.rstrip(".").lower()


def normalize_short(text: str) -> str:
    """Shapes answers: first line, whitespace and trailing periods stripped, lower-cased."""
    lines = text.strip().splitlines()
    return normalize_gqa(lines[0].strip() if lines else "").strip()


def score_gqa_rows(rows: Sequence[dict]) -> dict[str, float]:
    """Accuracy (percent) of `prediction` against `answer`."""
    oks = [normalize_gqa(r.get("prediction") or "") == str(r["answer"]) for r in rows]
    return {"accuracy": 100 * sum(oks) / len(oks) if oks else 0.0, "count": len(oks)}


def score_shapes_rows(rows: Sequence[dict]) -> dict[str, float]:
    """Overall and per-`question_type` exact-match accuracy (percent), with per-type chance levels."""
    by_type: dict[str, list[bool]] = {}
    vocab: dict[str, set[str]] = {}
    oks = []
    for row in rows:
        gold = normalize_short(str(row["answer"]))
        ok = normalize_short(row.get("prediction") or "") == gold
        oks.append(ok)
        qtype = str(row.get("question_type") or "all")
        by_type.setdefault(qtype, []).append(ok)
        vocab.setdefault(qtype, set()).add(gold)
    metrics: dict[str, float] = {"accuracy": 100 * sum(oks) / len(oks) if oks else 0.0, "count": len(oks)}
    chance_total = 0.0
    for qtype, type_oks in sorted(by_type.items()):
        chance = 100 / len(vocab[qtype])
        metrics[f"accuracy/{qtype}"] = 100 * sum(type_oks) / len(type_oks)
        metrics[f"chance/{qtype}"] = chance
        chance_total += chance * len(type_oks)
    if oks:
        metrics["chance"] = chance_total / len(oks)
    return metrics
