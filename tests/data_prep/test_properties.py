"""Property tests: no input makes the record parser or templating/masking fail other than with a RecordError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vistune import IGNORE_INDEX
from vistune.data_prep import Record, RecordError, TokenizedRecord, get_template, tokenize_record
from vistune.data_prep.records.parse import parse_record

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["id", "image", "images", "conversations", "messages", "from", "value", "role", "content",
                     "type", "text"]) | st.text(max_size=4), inner, max_size=4), max_leaves=12)
pieces = st.sampled_from(["<image>", "</s>", "<s>", "\n", " ", "<|im_end|>", "é", "red", "ASSISTANT:", ""])
texts = st.lists(pieces | st.text(max_size=6), max_size=5).map("".join)
turns = st.lists(st.tuples(st.sampled_from(["human", "gpt", "user", "system"]), texts), min_size=0, max_size=6)


@SETTINGS
@given(raw=json_values)
def test_parser_returns_a_record_or_a_record_error(raw):
    try:
        assert isinstance(parse_record(raw, 0), Record)
    except RecordError as err:
        assert str(err)


@SETTINGS
@given(conv=turns, n_images=st.integers(0, 2), template=st.sampled_from(["vicuna_v1", "plain", "llama3", "chatml"]),
       max_length=st.integers(1, 200))
def test_tokenize_returns_consistent_ids_or_a_record_error(tokenizer, conv, n_images, template, max_length):
    raw = {"id": "p", "conversations": [{"from": r, "value": t} for r, t in conv]}
    if n_images:
        raw["image"] = ["a.png"] * n_images
    try:
        record = parse_record(raw, 0)
        tok = tokenize_record(record, tokenizer, get_template(template), num_image_tokens=3, max_length=max_length)
    except RecordError as err:
        assert str(err)
        return
    assert isinstance(tok, TokenizedRecord) and len(tok.input_ids) == len(tok.labels) <= max_length
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert tok.input_ids.count(image_id) == 3 * len(record.images)
    assert all(lab in (IGNORE_INDEX, t) for t, lab in zip(tok.input_ids, tok.labels, strict=True))
    assert tok.num_supervised > 0 and 1 <= tok.turns_kept <= tok.turns_total
