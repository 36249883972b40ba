"""What a benchmark question is (`EvalItem`) and the predictions file that answers it (JSONL, resumable).

A predictions line is `{"question_id", "prediction", "prompt", **reference}`: the reference fields are
whatever the benchmark's scorer needs (documented per benchmark in docs/eval.md), so a predictions file
can be scored later, or elsewhere, with no model and no question file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EvalItem:
    """One question to ask the model."""

    question_id: str  # unique within the benchmark file; the key that makes runs resumable
    prompt: str  # the user text, benchmark suffix included, without the image token
    image: str | None = None  # image path (relative to --image-root) or None for text-only questions
    image_b64: str | None = None  # an embedded image (MMBench TSVs), base64-encoded
    reference: dict = field(default_factory=dict)  # the scorer's reference fields, copied to the predictions


def read_jsonl(path: str | Path) -> list[dict]:
    """All JSON lines of a file; a half-written last line (an interrupted run) is skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def answered_ids(path: str | Path) -> set[str]:
    """question_ids already present in a predictions file (empty if it does not exist)."""
    if not Path(path).exists():
        return set()
    return {str(r["question_id"]) for r in read_jsonl(path) if "question_id" in r}


class PredictionWriter:
    """Appends prediction lines and flushes each one, so an interrupted run loses at most one batch."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_last_line(self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, item: EvalItem, prediction: str) -> None:
        row = {"question_id": item.question_id, "prediction": prediction, "prompt": item.prompt, **item.reference}
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pending(items: Iterable[EvalItem], done: set[str]) -> Iterator[EvalItem]:
    return (item for item in items if item.question_id not in done)


def _drop_partial_last_line(path: Path) -> None:
    """A run killed mid-write leaves a line without its newline: cut it so appends stay valid JSONL."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])
