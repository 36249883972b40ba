"""Turning one raw record (a dict from JSON, JSONL or an Arrow row) into a `Record`, or a `RecordError`.

Two spellings are understood: LLaVA's `conversations` of `{from, value}` with an `image` field, and the
OpenAI / ShareGPT `messages` of `{role, content}` where content is a string or a list of typed parts.
Every check here is structural; images are only looked at later (images/load.py, doctor/validate.py).
"""

from __future__ import annotations

from typing import Any

from vistune import IMAGE_TOKEN
from vistune.data_prep.records.record import Record, RecordError, Turn, count_image_tags, strip_image_tags

_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
_LLAVA_KEYS = ("conversations",)
_MESSAGES_KEYS = ("messages",)


def record_style(raw: Any) -> str:
    """'llava' or 'messages', from the keys of a raw record."""
    if isinstance(raw, dict) and any(k in raw for k in _MESSAGES_KEYS) and "conversations" not in raw:
        return "messages"
    return "llava"


def parse_record(raw: Any, index: int, style: str = "auto", implicit_images: bool = False) -> Record:
    """One raw dict -> Record. `implicit_images`: images with no tag in the text go to the first user turn."""
    if not isinstance(raw, dict):
        raise RecordError("bad_shape", f"record is a {type(raw).__name__}, not an object")
    style = record_style(raw) if style == "auto" else style
    rid = _record_id(raw, index)
    if style == "messages":
        images, turns = _messages_turns(raw)
    else:
        images, turns = _llava_turns(raw)
    extra = {k: v for k, v in raw.items() if k not in ("id", "image", "images", "conversations", "messages")}
    return build_record(rid, images, turns, implicit_images=implicit_images, extra=extra)


def build_record(rid: str, images: list[str], raw_turns: list[tuple[str, str, str]], *,
                 implicit_images: bool = False, extra: dict | None = None) -> Record:
    """Validates (role, text, field) triples and image tags; moves images to the first user turn."""
    for path in images:
        if not isinstance(path, str) or not path.strip():
            raise RecordError("bad_shape", f"image path {path!r} is not a non-empty string", "image")
    if not raw_turns:
        raise RecordError("empty_conversation", "the conversation has no turns", "conversations")
    system = None
    if raw_turns[0][0] == "system":
        system, raw_turns = raw_turns[0][1], raw_turns[1:]
        if IMAGE_TOKEN in system:
            raise RecordError("image_tag_in_reply", f"literal {IMAGE_TOKEN} in the system prompt", "system")
    tags, turns = 0, []
    for i, (role, text, where) in enumerate(raw_turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise RecordError("role_order", f"{where}: expected a {expected} turn, found {role}", where)
        if role == "assistant":
            if IMAGE_TOKEN in text:
                raise RecordError("image_tag_in_reply", f"{where}: literal {IMAGE_TOKEN} in a reply", where)
            if not text.strip():
                raise RecordError("empty_reply", f"{where}: the reply is empty", where)
        else:
            tags += count_image_tags(text)
            text = strip_image_tags(text)
        turns.append(Turn(role, text))
    if not turns:
        raise RecordError("empty_conversation", "the conversation has only a system prompt", "conversations")
    if turns[-1].role != "assistant":
        raise RecordError("role_order", "the conversation ends with a user turn (no reply to learn)", "conversations")
    if tags != len(images) and not (implicit_images and tags == 0):
        raise RecordError(
            "image_tag_mismatch", f"{tags} {IMAGE_TOKEN} tag(s) in user turns but {len(images)} image(s)", "image"
        )
    return Record(id=rid, images=list(images), turns=turns, system=system, extra=dict(extra or {}))


def _record_id(raw: dict, index: int) -> str:
    rid = raw.get("id", raw.get("sample_id"))
    if rid is None:
        return f"#{index}"
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise RecordError("bad_shape", f"id {rid!r} is not a string or integer", "id")
    return str(rid)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RecordError("bad_shape", f"{where} is a {type(value).__name__}, not a string", where)
    if not value.isascii() and _has_surrogate(value):
        raise RecordError("bad_text", f"{where} holds bytes that are not valid UTF-8", where)
    return value


def _has_surrogate(value: str) -> bool:
    """A lone surrogate: what surrogateescape made of invalid UTF-8 bytes (strict UTF-8 refuses only those)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _image_list(raw: dict) -> list[str]:
    value = raw.get("images", raw.get("image"))
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise RecordError("bad_shape", f"image is a {type(value).__name__}, not a path or a list of paths", "image")


def _role(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.lower() not in _ROLES:
        raise RecordError("unknown_role", f"{where}: unknown role {value!r}", where)
    return _ROLES[value.lower()]


def _llava_turns(raw: dict) -> tuple[list[str], list[tuple[str, str, str]]]:
    conv = raw.get("conversations")
    if not isinstance(conv, list):
        raise RecordError("bad_shape", "conversations is missing or not a list", "conversations")
    turns = []
    for i, turn in enumerate(conv):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise RecordError("bad_shape", f"{where} is not an object", where)
        turns.append((_role(turn.get("from"), f"{where}.from"), _text(turn.get("value"), f"{where}.value"), where))
    return _image_list(raw), turns


def _messages_turns(raw: dict) -> tuple[list[str], list[tuple[str, str, str]]]:
    messages = raw.get("messages")
    if not isinstance(messages, list):
        raise RecordError("bad_shape", "messages is missing or not a list", "messages")
    images, turns = list(_image_list(raw)), []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise RecordError("bad_shape", f"{where} is not an object", where)
        role = _role(msg.get("role"), f"{where}.role")
        content = msg.get("content")
        if isinstance(content, list):
            text, part_images = _content_parts(content, f"{where}.content")
            images.extend(part_images)
        else:
            text = _text(content, f"{where}.content")
        turns.append((role, text, where))
    return images, turns


def _content_parts(parts: list, where: str) -> tuple[str, list[str]]:
    """Typed parts -> (text with one `<image>` tag per image part, image paths found in the parts)."""
    tags, texts, images = [], [], []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
            raise RecordError("bad_shape", f"{where}[{j}] is not a {{type: text|image}} part", f"{where}[{j}]")
        if part["type"] == "text":
            texts.append(_text(part.get("text"), f"{where}[{j}].text"))
        else:
            tags.append(IMAGE_TOKEN + "\n")
            path = part.get("image", part.get("path", part.get("url")))
            if path is not None:
                images.append(path)
    return "".join(tags) + "".join(texts), images
