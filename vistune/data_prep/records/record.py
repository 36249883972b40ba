"""The one record type every reader produces, and the error a reader raises for one bad record.

Readers differ in how a conversation is spelled on disk; everything downstream (templates, tokenisation,
the doctor, conversion) sees only `Record`: images as paths relative to an image root, placed (as in
LLaVA-1.5) at the front of the first user turn, and alternating user / assistant turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vistune import IMAGE_TOKEN

Role = Literal["user", "assistant"]


@dataclass
class Turn:
    role: Role  # "user" or "assistant"
    text: str  # the message, without any `<image>` tag (images live on the record)


@dataclass
class Record:
    id: str  # unique within a dataset; readers make one from the index when the source has none
    images: list[str]  # paths relative to the image root; empty for a text-only record
    turns: list[Turn]  # user, assistant, user, assistant, ... (ends with an assistant turn)
    system: str | None = None  # a per-record system prompt; None = the template's default
    image_root: str | None = None  # overrides the caller's image root (e.g. images extracted from Arrow)
    extra: dict = field(default_factory=dict)  # source fields kept for conversion (e.g. question_type)

    @property
    def is_multimodal(self) -> bool:
        return bool(self.images)


class RecordError(ValueError):
    """One record is unusable: `problem` is a stable code (see PROBLEMS), `field` where it was found."""

    def __init__(self, problem: str, message: str, field: str | None = None):
        if problem not in PROBLEMS:
            raise KeyError(f"unknown problem code {problem!r}")
        super().__init__(message)
        self.problem = problem
        self.field = field


# Every way a record can be unusable, with a one-line explanation (the doctor's report uses these).
PROBLEMS: dict[str, str] = {
    "bad_json": "the line or file is not valid JSON",
    "bad_shape": "a field is missing or has the wrong type",
    "bad_text": "text is not valid UTF-8 / not a string",
    "unknown_role": "a turn has a role other than human/user, gpt/assistant, system",
    "role_order": "turns do not alternate user, assistant, ... ending with an assistant turn",
    "empty_conversation": "the record has no turns",
    "empty_reply": "an assistant turn is empty",
    "duplicate_id": "the id was already used by an earlier record",
    "image_tag_mismatch": f"the number of {IMAGE_TOKEN} tags in user turns differs from the number of images",
    "image_tag_in_reply": f"a literal {IMAGE_TOKEN} appears in an assistant turn or the system prompt",
    "image_escapes_root": "an image path leaves the image root (.., absolute path or symlink)",
    "missing_image": "an image file does not exist",
    "empty_image": "an image file is zero bytes",
    "corrupt_image": "an image file cannot be decoded",
    "image_too_large": "an image has more pixels than PIL's decompression-bomb limit",
    "too_long": "the image tokens or the first exchange do not fit in max_length",
    "no_supervised_tokens": "no token is supervised after templating and truncation",
    "tokenization": "the rendered text does not tokenise as the template expects",
    "empty_chosen": "a preference record's chosen reply is missing or empty",
    "empty_rejected": "a preference record's rejected reply is missing or empty",
    "same_replies": "a preference record's chosen and rejected replies are the same",
}


def count_image_tags(text: str) -> int:
    return text.count(IMAGE_TOKEN)


def strip_image_tags(text: str) -> str:
    """Removes `<image>` tags and the newline LLaVA data puts next to them ("<image>\\n..." / "...\\n<image>")."""
    for form in (IMAGE_TOKEN + "\n", "\n" + IMAGE_TOKEN, IMAGE_TOKEN):
        text = text.replace(form, "")
    return text.strip()
