"""Prompts with reference answers for stage rl, read from LLaVA JSON / JSONL or `{image, question, answer}` rows.

A LLaVA (or messages-style) record is a prompt whose last assistant turn is the reference answer: the turns
before it are the prompt. A `{"image", "question", "answer"}` row is a one-turn prompt. Other fields of a record
(`question_type`, ...) are kept: TRL hands them to the reward functions as columns. A record without an answer
(or with no image, or an unreadable one) is an error that names the file and the record, before training starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vistune.data_prep.records import Record, RecordError, SkipLog, Turn
from vistune.data_prep.records.readers import checked_source, duplicate_error, iter_raw, raw_id, read_one


class PromptError(ValueError):
    """One rl record is unusable; the message names the file, the record and the field."""


@dataclass
class RLPrompt:
    id: str  # the record's id (or its index)
    image: str  # image path relative to the image root
    turns: list[Turn]  # the prompt: user, assistant, ..., user (images at the front of the first user turn)
    answer: str  # the reference answer the rewards check completions against
    system: str | None = None  # a per-record system prompt; None = the template's default
    extra: dict = field(default_factory=dict)  # the record's other fields (question_type, ...): reward columns

    def record(self) -> Record:
        """The prompt as a Record (for the template's generation prompt)."""
        return Record(id=self.id, images=[self.image], turns=self.turns, system=self.system)


def load_rl_prompts(path: str | Path, skips: SkipLog | None = None) -> list[RLPrompt]:
    """Every record of `path` as an RLPrompt. The first bad record raises PromptError naming it, or, given `skips`
    (the doctor), every bad record is logged there and left out."""
    path = checked_source(path, "auto")
    prompts, seen = [], set()
    for index, raw, implicit, error in iter_raw(path, "auto"):
        rid = raw_id(raw, index)
        try:
            prompt = _question_row(raw, index) if _is_question_row(raw) else _from_record(
                read_one(raw, index, implicit, error))
            if prompt.id in seen:
                raise duplicate_error(prompt)
        except RecordError as err:
            if err.problem == "role_order" and "ends with a user turn" in str(err):
                err = RecordError("role_order", "no reference answer: the conversation must end with the assistant "
                                  "turn that holds it", err.field)
            if skips is None:
                raise PromptError(f"{path}: record {rid!r} (#{index}): {err}"
                                  + (f" (field {err.field})" if err.field else "")) from None
            skips.add(id=rid, source=str(path), problem=err.problem, reason=str(err), stage="validate", index=index,
                      field=err.field)
            continue
        seen.add(prompt.id)
        prompts.append(prompt)
    if not prompts and skips is None:
        raise PromptError(f"{path}: no records")
    return prompts


def is_question_data(path: str | Path, fmt: str = "auto") -> bool:
    """True when the first record of `path` is an `{image, question, answer}` row."""
    for _, raw, _, error in iter_raw(Path(path), fmt):
        if error is None and isinstance(raw, dict):
            return _is_question_row(raw)
    return False


def _is_question_row(raw) -> bool:
    return isinstance(raw, dict) and "question" in raw and "conversations" not in raw and "messages" not in raw


def _question_row(raw: dict, index: int) -> RLPrompt:
    rid = str(raw.get("id", index))
    answer = raw.get("answer")
    if answer is None or not str(answer).strip():
        raise RecordError("bad_shape", "no reference answer (the row has no non-empty \"answer\")", "answer")
    image = raw.get("image")
    if not isinstance(image, str) or not image.strip():
        raise RecordError("bad_shape", "no image (rl prompts are questions about one image)", "image")
    extra = {k: v for k, v in raw.items() if k not in ("id", "image", "question", "answer")}
    return RLPrompt(rid, image, [Turn("user", str(raw["question"]).replace("<image>", "").strip())], str(answer),
                    extra=extra)


def _from_record(record: Record) -> RLPrompt:
    """The last assistant turn is the answer; the turns before it are the prompt."""
    if len(record.images) != 1:
        raise RecordError("image_tag_mismatch", f"{len(record.images)} images: rl prompts are questions about one "
                          "image", "image")
    answer = record.turns[-1].text
    extra = {k: v for k, v in record.extra.items() if k != "answer"}
    return RLPrompt(record.id, record.images[0], record.turns[:-1], answer, record.system, extra)
