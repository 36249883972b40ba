"""Preference pairs (an image, the conversation so far, a chosen and a rejected reply) for the prefer stage.

Read from LLaVA-style JSON / JSONL (`conversations` or `messages` ending with a user turn, or a `prompt` /
`question` string), RLAIF-V rows (`image`, `question`, `chosen`, `rejected`, `idx`) and Hugging Face dataset
directories. Each reply is tokenised exactly as stage 2 tokenises a record (same template, same masking, same
image-token expansion): the prompt is masked, only the final reply and its end-of-turn marker are scored.
Bad pairs are never trained on: each is named with a problem code and goes to the SkipLog (`skipped.jsonl`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vistune import IGNORE_INDEX
from vistune.data_prep.images import ImageTransform, load_image
from vistune.data_prep.records import Record, RecordError
from vistune.data_prep.records.parse import (
    _image_list,
    _llava_turns,
    _messages_turns,
    _record_id,
    _text,
    build_record,
)
from vistune.data_prep.records.readers import checked_source, iter_raw
from vistune.data_prep.records.skips import SkipLog
from vistune.data_prep.text.templates import Template
from vistune.data_prep.text.tokenize import tokenize_records

PAIR_KEYS = ("chosen", "rejected")  # a raw record holding either is a preference record


@dataclass
class PreferencePair:
    id: str  # unique within the dataset
    chosen: Record  # the conversation so far + the chosen reply as its last assistant turn
    rejected: Record  # the same conversation + the rejected reply
    image_root: str | None = None  # overrides the caller's image root (images extracted from Arrow)

    @property
    def images(self) -> list[str]:
        return self.chosen.images


@dataclass
class TokenizedPair:
    chosen_ids: list[int]  # prompt + chosen reply, images expanded to their image tokens
    chosen_mask: list[int]  # 1 on the scored tokens (the final reply and its end-of-turn marker)
    rejected_ids: list[int]
    rejected_mask: list[int]
    num_images: int


def is_preference_data(path: str | Path, fmt: str = "auto") -> bool:
    """True when the first record of `path` carries a chosen or rejected reply."""
    for _, raw, _, error in iter_raw(Path(path), fmt):
        if error is None and isinstance(raw, dict):
            return any(k in raw for k in PAIR_KEYS)
    return False


def parse_pair(raw: Any, index: int, implicit_images: bool = False) -> PreferencePair:
    """One raw dict -> PreferencePair; RecordError names the problem and the field."""
    if not isinstance(raw, dict):
        raise RecordError("bad_shape", f"record is a {type(raw).__name__}, not an object")
    rid = _record_id({"id": raw.get("id", raw.get("idx"))} if raw.get("id", raw.get("idx")) is not None else {}, index)
    replies = {}
    for key in PAIR_KEYS:
        value = raw.get(key)
        if isinstance(value, list):  # a messages list holding one assistant turn
            value = value[-1].get("content") if value and isinstance(value[-1], dict) else None
        if value is None or (isinstance(value, str) and not value.strip()):
            raise RecordError(f"empty_{key}", f"{key} is missing or empty", key)
        replies[key] = _text(value, key)
    if replies["chosen"].strip() == replies["rejected"].strip():
        raise RecordError("same_replies", "chosen and rejected are the same reply (nothing to prefer)", "rejected")
    images, turns = _prompt_turns(raw)
    implicit = implicit_images or any(k in raw for k in ("question", "prompt"))
    extra = {k: v for k, v in raw.items() if k not in ("id", "image", "images", "conversations", "messages",
                                                         "chosen", "rejected", "question", "prompt", "_image_root")}
    pair = {key: build_record(rid, images, turns + [("assistant", replies[key], key)], implicit_images=implicit,
                              extra=extra) for key in PAIR_KEYS}
    for record in pair.values():
        record.image_root = raw.get("_image_root")
    return PreferencePair(rid, pair["chosen"], pair["rejected"], image_root=raw.get("_image_root"))


def _prompt_turns(raw: dict) -> tuple[list[str], list[tuple[str, str, str]]]:
    """(images, turns of the conversation so far): a prompt / question string, or conversations / messages."""
    for key in ("prompt", "question"):
        if isinstance(raw.get(key), str):
            return _image_list(raw), [("user", _text(raw[key], key), key)]
    if "messages" in raw or isinstance(raw.get("prompt"), list):
        return _messages_turns({**raw, "messages": raw.get("messages", raw.get("prompt"))})
    if "conversations" in raw:
        return _llava_turns(raw)
    raise RecordError("bad_shape", "no prompt: give prompt / question, conversations or messages", "prompt")


def load_pairs(path: str | Path, *, fmt: str = "auto", skips: SkipLog | None = None) -> list[PreferencePair]:
    """All good pairs of `path`; bad ones go to `skips` (stage "read")."""
    path = checked_source(path, fmt)
    skips = skips if skips is not None else SkipLog()
    pairs, seen = [], set()
    for index, raw, implicit, error in iter_raw(path, fmt):
        try:
            if error is not None:
                raise error
            pair = parse_pair(raw, index, implicit_images=implicit)
            if pair.id in seen:
                raise RecordError("duplicate_id", f"id {pair.id!r} was already used by an earlier record", "id")
        except RecordError as err:
            rid = str(raw.get("id", raw.get("idx", f"#{index}"))) if isinstance(raw, dict) else f"#{index}"
            skips.add(id=rid, source=str(path), problem=err.problem, reason=str(err), stage="read", index=index,
                      field=err.field)
            continue
        seen.add(pair.id)
        pairs.append(pair)
    return pairs


def tokenize_pairs(pairs: list[PreferencePair], tokenizer, template: Template, *, num_image_tokens: int,
                   max_length: int):
    """Yields (pair, TokenizedPair or RecordError): both replies tokenised as stage 2 tokenises a record."""
    records = [r for p in pairs for r in (p.chosen, p.rejected)]
    results = iter(tokenize_records(records, tokenizer, template, num_image_tokens=num_image_tokens,
                                    max_length=max_length))
    for pair in pairs:
        (_, chosen), (_, rejected) = next(results), next(results)
        try:
            yield pair, TokenizedPair(*_scored(chosen, "chosen"), *_scored(rejected, "rejected"),
                                      num_images=len(pair.images))
        except RecordError as err:
            yield pair, err


def _scored(tok, key: str) -> tuple[list[int], list[int]]:
    """(ids, mask of the final reply's tokens); a pair whose final reply does not fit is too long."""
    if isinstance(tok, RecordError):
        raise RecordError(tok.problem, f"{key}: {tok}", tok.field or key)
    if tok.truncated:
        raise RecordError("too_long", f"{key}: the prompt and reply need more than the max_length tokens", key)
    labels = tok.labels
    end = max(i for i, x in enumerate(labels) if x != IGNORE_INDEX) + 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    mask = [0] * len(labels)
    mask[start:end] = [1] * (end - start)
    return tok.input_ids, mask


def tokenize_dataset(pairs: list[PreferencePair], tokenizer, template: Template, *, num_image_tokens: int,
                     max_length: int, skips: SkipLog, source: str = "-"):
    """A `datasets.Dataset` of tokenised pairs (what TRL's trainers take); bad pairs go to `skips`."""
    import datasets

    rows = []
    for pair, tok in tokenize_pairs(pairs, tokenizer, template, num_image_tokens=num_image_tokens,
                                    max_length=max_length):
        if isinstance(tok, RecordError):
            skips.add(id=pair.id, source=source, problem=tok.problem, reason=str(tok), stage="tokenize",
                      field=tok.field)
            continue
        rows.append({"id": pair.id, "images": list(pair.images), "image_root": pair.image_root or "",
                     "chosen_ids": tok.chosen_ids, "chosen_mask": tok.chosen_mask,
                     "rejected_ids": tok.rejected_ids, "rejected_mask": tok.rejected_mask})
    features = datasets.Features({
        "id": datasets.Value("string"), "images": datasets.List(datasets.Value("string")),
        "image_root": datasets.Value("string"),
        **{k: datasets.List(datasets.Value("int32")) for k in ("chosen_ids", "chosen_mask", "rejected_ids",
                                                                "rejected_mask")},
    })
    return datasets.Dataset.from_list(rows, features=features)


def pair_lengths(dataset) -> list[int]:
    """LLaVA modality lengths per pair (the longer reply's sequence; negative for text-only pairs)."""
    return [max(len(c), len(r)) * (1 if imgs else -1)
            for c, r, imgs in zip(dataset["chosen_ids"], dataset["rejected_ids"], dataset["images"], strict=True)]


@dataclass
class PreferenceCollator:
    """Pairs -> one batch of 2B rows (all chosen, then all rejected) with `completion_mask` marking the scored
    tokens, as TRL's DPOTrainer reads it; the images load here (the stage-2 transform), a pair whose image fails
    is dropped from the batch and logged, never trained on half."""

    pad_token_id: int
    transform: ImageTransform
    image_root: str  # default image root (a pair extracted from Arrow carries its own)
    skips: SkipLog | None = None
    source: str = "-"

    def __call__(self, samples: list[dict]) -> dict:
        kept, images = [], []
        for s in samples:
            try:
                root = s.get("image_root") or self.image_root
                images.append([self.transform(load_image(p, root)) for p in s["images"]])
                kept.append(s)
            except RecordError as err:
                if self.skips is not None:
                    self.skips.add(id=s["id"], source=self.source, problem=err.problem, reason=str(err), stage="image")
        rows = [s["chosen_ids"] for s in kept] + [s["rejected_ids"] for s in kept]
        masks = [s["chosen_mask"] for s in kept] + [s["rejected_mask"] for s in kept]
        longest = max((len(r) for r in rows), default=0)
        batch = {
            "input_ids": _pad(rows, longest, self.pad_token_id),
            "attention_mask": _pad([[1] * len(r) for r in rows], longest, 0),
            "completion_mask": _pad(masks, longest, 0),
            "ids": [s["id"] for s in kept],
        }
        flat = [t for per in images for t in per]
        if flat:
            batch["pixel_values"] = torch.stack(flat + flat)  # rejected rows use the same images, in the same order
        return batch


def _pad(rows: list[list[int]], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out
