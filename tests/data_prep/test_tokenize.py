"""Tokenisation: image expansion, truncation by whole exchanges (never inside images), skip reasons."""

from __future__ import annotations

import pytest

from vistune import IGNORE_INDEX
from vistune.data_prep import Record, RecordError, Turn, get_template, tokenize_record

VICUNA = get_template("vicuna_v1")


def conversation(n_turns: int, images: int = 1) -> Record:
    turns = []
    for k in range(n_turns):
        turns += [Turn("user", f"question {k}"), Turn("assistant", f"answer number {k}")]
    return Record(id="c", images=["a.png"] * images, turns=turns)


def length(record, tokenizer, n_img=16):
    return len(tokenize_record(record, tokenizer, VICUNA, num_image_tokens=n_img, max_length=10_000).input_ids)


def test_image_tokens_expand_and_are_contiguous(tokenizer):
    tok = tokenize_record(conversation(1, images=2), tokenizer, VICUNA, num_image_tokens=16, max_length=1000)
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    positions = [i for i, t in enumerate(tok.input_ids) if t == image_id]
    first, second = positions[:16], positions[16:]  # "<image>\n<image>\n": one run of 16 per image
    assert len(positions) == 32 and first == list(range(first[0], first[0] + 16))
    assert second == list(range(first[-1] + 2, first[-1] + 18))
    assert tok.num_images == 2 and len(tok.labels) == len(tok.input_ids)
    assert tok.input_ids[0] == tokenizer.bos_token_id


def test_later_turns_that_do_not_fit_are_dropped_whole(tokenizer):
    one, two, three = (length(conversation(k), tokenizer) for k in (1, 2, 3))
    for max_length, kept in ((three, 3), (three - 1, 2), (two, 2), (two - 1, 1), (one, 1)):
        tok = tokenize_record(conversation(3), tokenizer, VICUNA, num_image_tokens=16, max_length=max_length)
        assert (tok.turns_kept, tok.turns_total) == (kept, 3)
        full = tokenize_record(conversation(kept), tokenizer, VICUNA, num_image_tokens=16, max_length=10_000)
        assert tok.input_ids == full.input_ids and tok.labels == full.labels  # exactly the shorter conversation


def test_record_whose_image_or_first_exchange_does_not_fit_is_rejected(tokenizer):
    one = length(conversation(1), tokenizer)
    with pytest.raises(RecordError) as err:
        tokenize_record(conversation(3), tokenizer, VICUNA, num_image_tokens=16, max_length=one - 1)
    assert err.value.problem == "too_long"
    with pytest.raises(RecordError, match="too_long|need more"):
        tokenize_record(conversation(1), tokenizer, VICUNA, num_image_tokens=500, max_length=400)


def test_no_supervised_token_and_image_count_guard(tokenizer):
    record = Record(id="x", images=[], turns=[Turn("user", "q <image> tag"), Turn("assistant", "a")])
    with pytest.raises(RecordError) as err:  # a literal tag where no image belongs never becomes image tokens
        tokenize_record(record, tokenizer, VICUNA, num_image_tokens=4, max_length=100)
    assert err.value.problem == "tokenization"


def test_labels_are_ignore_outside_replies(tokenizer):
    tok = tokenize_record(conversation(2), tokenizer, VICUNA, num_image_tokens=4, max_length=1000)
    supervised = [t for t, lab in zip(tok.input_ids, tok.labels, strict=True) if lab != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == " answer number 0</s> answer number 1</s>"
    assert tok.num_supervised == len(supervised)


def test_batched_tokenisation_equals_one_at_a_time(tokenizer):
    from vistune.data_prep import tokenize_records

    records = [conversation(k, images=k % 2) for k in range(1, 6)] + [conversation(40)]
    for template in ("vicuna_v1", "llama3"):  # llama3 writes its own BOS: the two encoding groups differ
        batched = list(tokenize_records(records, tokenizer, get_template(template), num_image_tokens=4,
                                        max_length=120, batch_size=4))
        for record, got in batched:
            try:
                want = tokenize_record(record, tokenizer, get_template(template), num_image_tokens=4, max_length=120)
            except RecordError as err:
                assert isinstance(got, RecordError) and got.problem == err.problem
                continue
            assert got == want
