"""Builders for small LLaVA-format fixtures, shared by the data tests (imported as `data_fixtures`)."""

from __future__ import annotations

import json


def write_json(path, data) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def llava(rid, image, *qa):
    """A LLaVA record: `image` (str, list or None) and (question, answer) pairs; the tag leads the first turn."""
    images = [image] if isinstance(image, str) else list(image or [])
    conv = []
    for k, (q, a) in enumerate(qa):
        tags = "<image>\n" * len(images) if k == 0 else ""
        conv += [{"from": "human", "value": tags + q}, {"from": "gpt", "value": a}]
    record = {"id": rid, "conversations": conv}
    if image is not None:
        record["image"] = image
    return record
