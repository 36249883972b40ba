"""lmms-eval hooks for vistune_heldout.yaml: LLaVA-format records (image, conversations) as questions and answers."""

from __future__ import annotations

from PIL import Image


def doc_to_visual(doc: dict) -> list[Image.Image]:
    """The record's image, its path relative to the directory lmms-eval runs in."""
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc: dict) -> str:
    """The first human turn without its <image> placeholder: llava_hf puts the image before the text itself."""
    return doc["conversations"][0]["value"].replace("<image>", "").strip()


def doc_to_target(doc: dict) -> str:
    """The record's `answer`, else the reply that follows the question."""
    return doc.get("answer") or doc["conversations"][1]["value"]


def normalise(text: str) -> str:
    """As vistune's `shapes` scorer: the first line, whitespace and trailing periods stripped, lower-cased."""
    lines = text.strip().splitlines()
    return (lines[0].strip() if lines else "").rstrip(".").lower().strip()


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """Exact match of the normalised answer and target (`vistune eval run --benchmark shapes`'s accuracy / 100)."""
    return {"exact_match": float(normalise(results[0]) == normalise(doc_to_target(doc)))}
