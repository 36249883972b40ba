"""Conversation templates: one renderer per template that records where each supervised reply lies.

A template renders a `Record` turn by turn and notes the character span of every assistant reply plus its
end-of-turn marker; tokenize.py then supervises exactly the tokens inside those spans. Each table-driven
template also emits an equivalent Jinja chat template for `processor.apply_chat_template` (inference).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from vistune import IMAGE_TOKEN
from vistune.data_prep.records.record import Record, Turn, strip_image_tags

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


@dataclass
class Rendered:
    text: str  # the full conversation as the LLM sees it (one `<image>` per image)
    spans: list[tuple[int, int]]  # [start, end) of each reply + its end-of-turn marker: the supervised text
    exchange_ends: list[int]  # character offset just after each assistant turn (where truncation may cut)


class Template:
    """Interface: `render` a record with its supervised spans, and `prompt` one for generation."""

    name: str  # the registry name
    jinja: str | None  # an equivalent Jinja chat template, or None (use the tokenizer's own)

    def render(self, record: Record, tokenizer=None) -> Rendered:
        raise NotImplementedError

    def prompt(self, record: Record, tokenizer=None) -> str:
        """The text to generate the next reply from (the record's turns should end with a user turn)."""
        raise NotImplementedError


@dataclass
class TableTemplate(Template):
    """A template given as text pieces; `{bos}`, `{eos}`, `{system}`, `{images}`, `{text}` are filled in."""

    name: str
    begin: str  # at the very start ("{bos}" when the template writes the BOS token itself)
    system: str  # the system block; "" = the template has no system prompt
    user: str  # a user turn
    assistant: str  # text before a reply (not supervised)
    end_of_turn: str  # after a reply; supervised with it
    after_turn: str  # after the end-of-turn marker (not supervised)
    generation: str  # what `add_generation_prompt` appends
    image: str = IMAGE_TOKEN + "\n"  # one per image, at the front of the first user turn
    default_system: str | None = None  # the system prompt when a record has none

    def render(self, record: Record, tokenizer=None) -> Rendered:
        fill = _specials(tokenizer)
        assistant, end_of_turn, after_turn = (_fill(p, fill) for p in (self.assistant, self.end_of_turn,
                                                                      self.after_turn))
        prompt_length = self._prompt_length(fill)
        text, spans, ends = self._header(record.system, fill), [], []
        for i, turn in enumerate(record.turns):
            if turn.role == "user":
                images = self.image * len(record.images) if i == 0 else ""
                text += _fill(self.user, fill, images=images, text=turn.text)
                continue
            start = len(text) + prompt_length
            text += assistant + turn.text + end_of_turn
            spans.append((start, len(text)))
            text += after_turn
            ends.append(len(text))
        return Rendered(text, spans, ends)

    def prompt(self, record: Record, tokenizer=None) -> str:
        return self.render(record, tokenizer).text + _fill(self.generation, _specials(tokenizer))

    def _prompt_length(self, fill: dict) -> int:
        """Where a reply's supervision starts: after the generation prompt, so what the model must write after
        it (vicuna_v1's space after "ASSISTANT:", as LLaVA supervises it) is supervised too."""
        assistant, generation = _fill(self.assistant, fill), _fill(self.generation, fill)
        return len(generation) if assistant.startswith(generation) else len(assistant)

    def _header(self, system: str | None, fill: dict) -> str:
        system = system if system is not None else self.default_system
        block = _fill(self.system, fill, system=system) if (self.system and system) else ""
        return _fill(self.begin, fill) + block

    @property
    def jinja(self) -> str:  # type: ignore[override]
        return _jinja_for(self)


def _specials(tokenizer) -> dict:
    bos = getattr(tokenizer, "bos_token", None) or ""
    eos = getattr(tokenizer, "eos_token", None) or "</s>"
    return {"bos": bos, "eos": eos}


def _fill(piece: str, fill: dict, **values: str) -> str:
    parts = _fields(piece)
    if len(parts) == 1:
        return piece
    out = list(parts)
    for k in range(1, len(parts), 2):  # odd parts name a field; `values` win over `fill`
        out[k] = values[parts[k]] if parts[k] in values else fill[parts[k]]
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _fields(piece: str) -> tuple[str, ...]:
    """A template piece split at its `{name}` fields: (text, name, text, ..., text); parsed once per piece."""
    return tuple(re.split(r"\{(\w+)\}", piece))


# -- Jinja ------------------------------------------------------------------------------------------------

_JINJA_VARS = {"bos": "bos_token", "eos": "eos_token", "system": "system", "images": "images", "text": "text"}


def _j(piece: str) -> str:
    """A text piece as Jinja output tags (literals quoted, so trim_blocks / lstrip_blocks cannot touch them)."""
    out = []
    for i, part in enumerate(re.split(r"\{(\w+)\}", piece)):
        if i % 2:
            out.append("{{ " + _JINJA_VARS[part] + " }}")
        elif part:
            out.append("{{ " + json.dumps(part, ensure_ascii=False) + " }}")
    return "".join(out)


def _jinja_for(t: TableTemplate) -> str:
    image = json.dumps(t.image, ensure_ascii=False)
    default = json.dumps(t.default_system or "", ensure_ascii=False)
    # A message's content is a string (its `<image>` tags inline) or typed parts: images first, then text.
    # A template that drops the user's words (plain) still counts the tags of a string content.
    tags_of_string = "{{ " + image + " * m['content'].count(" + json.dumps(IMAGE_TOKEN) + ") }}"
    macros = (
        "{% macro images_of(m) %}{% if m['content'] is string %}"
        + ("" if "{text}" in t.user else tags_of_string)
        + "{% else %}{% for c in m['content'] if c['type'] == 'image' %}{{ " + image + " }}{% endfor %}{% endif %}"
        "{% endmacro %}"
        "{% macro text_of(m) %}{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] if c['type'] == 'text' %}{{ c['text'] }}{% endfor %}{% endif %}{% endmacro %}"
    )
    header = (
        "{% if messages and messages[0]['role'] == 'system' %}{% set system = text_of(messages[0]) %}"
        "{% set msgs = messages[1:] %}{% else %}{% set system = " + default + " %}{% set msgs = messages %}"
        "{% endif %}" + _j(t.begin) + ("{% if system %}" + _j(t.system) + "{% endif %}" if t.system else "")
    )
    user = _j(t.user).replace("{{ images }}", "{{ images_of(m) }}").replace("{{ text }}", "{{ text_of(m) }}")
    turns = (
        "{% for m in msgs %}{% if m['role'] == 'user' %}" + user + "{% else %}" + _j(t.assistant)
        + "{% generation %}{{ text_of(m) }}" + _j(t.end_of_turn) + "{% endgeneration %}" + _j(t.after_turn)
        + "{% endif %}{% endfor %}"
    )
    return macros + header + turns + "{% if add_generation_prompt %}" + _j(t.generation) + "{% endif %}"


# -- the templates ----------------------------------------------------------------------------------------

PLAIN = TableTemplate(  # LLaVA stage 1: "<image>" + caption + "\n"; the user's words are dropped
    name="plain", begin="", system="", user="{images}", assistant="", end_of_turn="\n", after_turn="",
    generation="", image=IMAGE_TOKEN,
)
VICUNA_V1 = TableTemplate(  # LLaVA-1.5 stage 2
    name="vicuna_v1", begin="", system="{system} ", user="USER: {images}{text} ", assistant="ASSISTANT: ",
    end_of_turn="{eos}", after_turn="", generation="ASSISTANT:", default_system=VICUNA_SYSTEM,
)
LLAMA3 = TableTemplate(
    name="llama3", begin="{bos}", system="<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
    user="<|start_header_id|>user<|end_header_id|>\n\n{images}{text}<|eot_id|>",
    assistant="<|start_header_id|>assistant<|end_header_id|>\n\n", end_of_turn="<|eot_id|>", after_turn="",
    generation="<|start_header_id|>assistant<|end_header_id|>\n\n",
)
CHATML = TableTemplate(
    name="chatml", begin="", system="<|im_start|>system\n{system}<|im_end|>\n",
    user="<|im_start|>user\n{images}{text}<|im_end|>\n", assistant="<|im_start|>assistant\n",
    end_of_turn="<|im_end|>", after_turn="\n", generation="<|im_start|>assistant\n",
)


class AutoTemplate(Template):
    """The tokenizer's own chat template; reply spans are found by rendering growing prefixes of the chat."""

    name = "auto"
    jinja = None

    def render(self, record: Record, tokenizer=None) -> Rendered:
        messages = self._messages(record, tokenizer)
        full = self._apply(tokenizer, messages, False)
        spans, ends = [], []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self._apply(tokenizer, messages[:i], True)
            through = self._apply(tokenizer, messages[: i + 1], False)
            if not (full.startswith(through) and through.startswith(before)):
                raise ValueError(
                    "the tokenizer's chat template does not render conversations prefix by prefix; "
                    "pick an explicit template (vicuna_v1, llama3, chatml)"
                )
            start = through.find(m["content"], len(before))
            if start < 0:
                raise ValueError("the tokenizer's chat template changes the reply text; pick an explicit template")
            tail = through[start + len(m["content"]):]
            spans.append((len(before), start + len(m["content"]) + len(tail.rstrip())))
            ends.append(len(through))
        return Rendered(full, spans, ends)

    def prompt(self, record: Record, tokenizer=None) -> str:
        return self._apply(tokenizer, self._messages(record, tokenizer), True)

    @staticmethod
    def _messages(record: Record, tokenizer) -> list[dict]:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("template 'auto' needs a tokenizer that has a chat template")
        messages = [{"role": "system", "content": record.system}] if record.system else []
        for i, turn in enumerate(record.turns):
            images = (IMAGE_TOKEN + "\n") * len(record.images) if i == 0 else ""
            messages.append({"role": turn.role, "content": images + turn.text})
        return messages

    @staticmethod
    def _apply(tokenizer, messages: list[dict], generation: bool) -> str:
        if not messages:
            return tokenizer.apply_chat_template([], tokenize=False, add_generation_prompt=generation) if generation else ""
        from jinja2 import TemplateError

        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        except TemplateError:  # a template that only reads typed parts (llava-hf's LLaVA-NeXT: content[0]['text'])
            text = ""
        if text and all(m["content"].removeprefix(IMAGE_TOKEN + "\n") in text for m in messages if m["content"]):
            return text
        # a processor-style template (llava-hf's): content as typed parts, images rendered by the template itself
        return tokenizer.apply_chat_template([_typed(m) for m in messages], tokenize=False,
                                             add_generation_prompt=generation)


def _typed(message: dict) -> dict:
    """A string message as typed parts: one {"type": "image"} per leading image token, then the text."""
    text, parts = message["content"], []
    while text.startswith(IMAGE_TOKEN + "\n"):
        parts.append({"type": "image"})
        text = text[len(IMAGE_TOKEN) + 1:]
    return {"role": message["role"], "content": [*parts, {"type": "text", "text": text}]}


TEMPLATES: dict[str, Template] = {t.name: t for t in (PLAIN, VICUNA_V1, LLAMA3, CHATML, AutoTemplate())}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}: choose one of {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def record_from_messages(messages: list[dict], images: list[str] | None = None) -> Record:
    """A Record from chat messages (e.g. a prompt at inference); content may be a string or typed parts."""
    def text(content) -> str:
        if isinstance(content, str):
            return strip_image_tags(content) if IMAGE_TOKEN in content else content
        return "".join(part["text"] for part in content if part.get("type") == "text")

    system = text(messages[0]["content"]) if messages and messages[0]["role"] == "system" else None
    turns = [Turn(m["role"], text(m["content"])) for m in messages if m["role"] != "system"]
    return Record(id="prompt", images=list(images or []), turns=turns, system=system)
