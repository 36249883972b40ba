"""Batched encoding (every distinct piece of a batch encoded once, texts joined in numpy) gives exactly the ids and
character offsets of encoding each piece between image tokens on its own, as LLaVA's `tokenizer_image_token` does,
on the tiny byte-level BPE, the sentencepiece-only Vicuna tokenizer (legacy and not) and Llama-3's."""

from __future__ import annotations

import pytest

from vistune.data_prep import Record, Turn, get_template

IMAGE = "<image>"


def per_piece(text: str, tokenizer) -> tuple[list[int], list[tuple[int, int]]]:
    """The oracle: one tokenizer call per piece; BOS only on the first piece, unless the text writes its own."""
    image_id = tokenizer.convert_tokens_to_ids(IMAGE)
    first_special = not (tokenizer.bos_token and text.startswith(tokenizer.bos_token))
    ids, offsets, start = [], [], 0
    for k, piece in enumerate(text.split(IMAGE)):
        if k:
            ids.append(image_id)
            offsets.append((start - len(IMAGE), start))
        enc = tokenizer(piece, add_special_tokens=k == 0 and first_special, return_offsets_mapping=True)
        ids += enc.input_ids
        offsets += [(a + start, b + start) if b > a else (a, b) for a, b in enc.offset_mapping]
        start += len(piece) + len(IMAGE)
    return ids, offsets


def records() -> list[Record]:
    def turns(n: int, first: str) -> list[Turn]:
        out = []
        for k in range(n):
            out += [Turn("user", first if k == 0 else f"and {k} more?"), Turn("assistant", f"{k + 2} circles, café")]
        return out

    return [Record(id=f"r{n}", images=["a.png"] * n, turns=turns(1 + n % 3, "How many shapes are there?"))
            for n in range(4)] + [
        Record(id="text", images=[], turns=turns(2, "Is there a circle?")),
        Record(id="digits", images=["a.png"], turns=turns(1, "2 or 10?")),
    ]


def texts(tokenizer, templates: tuple[str, ...]) -> list[str]:
    out = [get_template(t).render(r, tokenizer).text for t in templates for r in records()]
    bos = tokenizer.bos_token or ""
    raw = ["", IMAGE, f"{IMAGE}{IMAGE}", f"x{IMAGE}", f"{IMAGE} y", f"{bos}{IMAGE}\nhello", "naïve ☕ <imag> 12"]
    return out + raw + out[:3]  # repeated texts share their pieces in the batch


def tokenizer_of(directory):
    from transformers import AutoTokenizer

    from vistune.model.compose import add_special_tokens

    tokenizer = AutoTokenizer.from_pretrained(directory)
    add_special_tokens(tokenizer)
    return tokenizer


@pytest.mark.parametrize("name", ["tiny", "vicuna", "vicuna-legacy", "llama3"])
def test_batched_encoding_equals_per_piece(zoo, tiny_parts, name):
    from vistune.data_prep.text.tokenize import _encode

    directory = {"tiny": lambda: tiny_parts[1], "vicuna": lambda: zoo.vicuna(False),
                 "vicuna-legacy": lambda: zoo.vicuna(True), "llama3": zoo.llama3}[name]()
    tokenizer = tokenizer_of(directory)
    templates = ("vicuna_v1", "plain", "llama3") if name != "llama3" else ("llama3", "plain")
    batch = texts(tokenizer, templates)
    got = _encode(batch, tokenizer)
    assert len(got) == len(batch)
    for text, (ids, offsets) in zip(batch, got, strict=True):
        want_ids, want_offsets = per_piece(text, tokenizer)
        assert ids.tolist() == want_ids, text
        assert [tuple(o) for o in offsets.tolist()] == want_offsets, text
    assert got[0][0].tolist() == _encode(batch[:1], tokenizer)[0][0].tolist()  # a batch of one: the same
