"""Writing records back out: LLaVA JSON / JSONL, `messages` JSON / JSONL, or a Hugging Face dataset dir.

Used by `vistune data convert` and by the doctor's `--fix`. Images extracted from an Arrow dataset are
copied next to the output (under `images/`) so the result is self-contained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vistune import IMAGE_TOKEN
from vistune.data_prep.records.record import Record

TARGETS = ("llava", "messages", "hf")


def to_llava(record: Record) -> dict:
    conversations = [{"from": "system", "value": record.system}] if record.system is not None else []
    for i, turn in enumerate(record.turns):
        tags = (IMAGE_TOKEN + "\n") * len(record.images) if i == 0 else ""
        conversations.append({"from": "human" if turn.role == "user" else "gpt", "value": tags + turn.text})
    out: dict = {"id": record.id}
    if record.images:
        out["image"] = record.images[0] if len(record.images) == 1 else list(record.images)
    out["conversations"] = conversations
    return {**out, **record.extra}


def to_messages(record: Record) -> dict:
    messages = [{"role": "system", "content": record.system}] if record.system is not None else []
    for i, turn in enumerate(record.turns):
        tags = (IMAGE_TOKEN + "\n") * len(record.images) if i == 0 else ""
        messages.append({"role": turn.role, "content": tags + turn.text})
    return {"id": record.id, "images": list(record.images), "messages": messages, **record.extra}


def write_records(records: list[Record], out: str | Path, to: str = "llava") -> Path:
    """Writes `records` to `out` (a .json / .jsonl file, or a directory for `hf`); returns the path written."""
    if to not in TARGETS:
        raise ValueError(f"unknown target format {to!r}: use one of {', '.join(TARGETS)}")
    out = Path(out)
    records = _localise_images(records, out if to == "hf" else out.parent)
    rows = [to_llava(r) if to == "llava" else to_messages(r) for r in records]
    if to == "hf":
        import datasets

        for row in rows:  # Arrow needs one type per column: extra fields as JSON text
            row.update({k: json.dumps(v) for k, v in row.items() if k not in ("id", "images", "messages")})
        datasets.Dataset.from_list(rows).save_to_disk(str(out))
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".jsonl":
        out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        out.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return out


def _localise_images(records: list[Record], out_dir: Path) -> list[Record]:
    """Images that live under a reader's own root (extracted from Arrow) are copied to out_dir/images/."""
    result = []
    for record in records:
        if not record.image_root:
            result.append(record)
            continue
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        images = []
        for name in record.images:
            shutil.copyfile(Path(record.image_root) / name, out_dir / "images" / Path(name).name)
            images.append(f"images/{Path(name).name}")
        result.append(Record(record.id, images, record.turns, record.system, None, dict(record.extra)))
    return result
