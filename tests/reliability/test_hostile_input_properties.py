"""Property tests (hypothesis) for what a hostile dataset can reach: whole data files, image paths, and the
template masking. No input may fail with anything but a clear, per-record validation error (tests/data_prep has
the per-record parser and tokenise-consistency properties; these extend them to files, paths and mask contents)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from vistune import IGNORE_INDEX
from vistune.data_prep import PROBLEMS, DataFileError, RecordError, SkipLog, load_records, tokenize_record
from vistune.data_prep.records.parse import parse_record

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _good(i: int) -> dict:
    return {"id": f"good-{i}", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["id", "image", "conversations", "messages", "from", "value", "role", "content"]), inner,
    max_size=4), max_leaves=10)
junk_lines = st.one_of(
    st.binary(max_size=40),
    values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"{", b"[]", b"null", b'{"id": 1}', b"\xff\xfe{}", b'"text"', b"{}" * 3]),
).filter(lambda b: b"good-" not in b)


@SETTINGS
@given(junk=st.lists(junk_lines, max_size=8), n_good=st.integers(0, 3), seed=st.randoms())
def test_a_jsonl_file_of_anything_keeps_every_good_record_and_skips_the_rest(tmp_path_factory, junk, n_good, seed):
    lines = [json.dumps(_good(i)).encode() for i in range(n_good)] + [j.replace(b"\n", b" ") for j in junk]
    seed.shuffle(lines)
    path = tmp_path_factory.mktemp("jsonl") / "data.jsonl"
    path.write_bytes(b"\n".join(lines))
    skips = SkipLog()
    records = load_records(path, skips=skips)
    assert {f"good-{i}" for i in range(n_good)} <= {r.id for r in records}
    assert all(s.problem in PROBLEMS and s.reason and s.stage == "read" for s in skips)


@SETTINGS
@given(data=st.binary(max_size=60) | values.map(lambda v: json.dumps(v).encode()))
def test_a_json_file_of_anything_is_read_or_refused_by_name(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("json") / "data.json"
    path.write_bytes(b"[" + data if not data.startswith(b"[") else data)
    try:
        load_records(path, skips=SkipLog())
    except DataFileError as err:
        assert str(path) in str(err)


path_parts = st.sampled_from(["..", ".", "a", "sub", "link", "dirlink", "loop1", "ok.png", "", "~", "\x00", "a" * 300,
                              "\udcff", "é", "%2e%2e", "..\\..", " "])


@pytest.fixture(scope="module")
def escape_root(tmp_path_factory):
    """root/ holds ok.png, sub/ok.png, symlinks leaving it and a symlink loop; outside/ holds valid targets."""
    from PIL import Image

    base = tmp_path_factory.mktemp("paths")
    root, outside = base / "root", base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    for where in (root, root / "sub", outside):
        Image.new("RGB", (8, 8)).save(where / "ok.png")
    (root / "link").symlink_to(outside / "ok.png")
    (root / "dirlink").symlink_to(outside)
    (root / "sub" / "link").symlink_to("../../outside/ok.png")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    return root


@SETTINGS
@given(parts=st.lists(path_parts, min_size=1, max_size=5), absolute=st.booleans())
@example(parts=["a\x00.png"], absolute=False)  # a NUL byte: os-level ValueError
@example(parts=["a" * 300 + ".png"], absolute=False)  # ENAMETOOLONG
@example(parts=["sub", "link"], absolute=False)  # a symlink inside the root to a file outside it
@example(parts=["dirlink", "ok.png"], absolute=False)
@example(parts=["loop1"], absolute=False)  # a symlink loop
def test_no_image_path_reaches_outside_the_root(escape_root, parts, absolute):
    from vistune.data_prep import load_image, resolve_image_path

    path = ("/" if absolute else "") + "/".join(parts)
    try:
        real = resolve_image_path(path, escape_root)
    except RecordError as err:
        assert err.problem in ("image_escapes_root", "missing_image") and str(err)
        return
    assert real.is_relative_to(escape_root.resolve()) and real.is_file()
    assert load_image(path, escape_root).mode == "RGB"


# -- masking: the supervised tokens are exactly the replies --------------------------------------------------

user_text = st.text(alphabet="q ", min_size=1, max_size=12).filter(str.strip)
reply_text = st.text(alphabet="z ", min_size=1, max_size=12).filter(lambda t: "z" in t)


@pytest.fixture(scope="module")
def tokenizer(tiny_parts):
    from vistune.model import build_llava

    return build_llava(*(str(p) for p in tiny_parts))[1].tokenizer


@SETTINGS
@given(exchanges=st.lists(st.tuples(user_text, reply_text), min_size=1, max_size=4),
       system=st.none() | user_text, style=st.sampled_from(["llava", "messages"]), n_images=st.integers(0, 2),
       template=st.sampled_from(["vicuna_v1", "llama3", "chatml", "plain"]), max_length=st.integers(8, 200))
def test_supervised_tokens_are_exactly_the_kept_replies(tokenizer, exchanges, system, style, n_images, template,
                                                        max_length):
    """User text is written in q, replies in z: a supervised token never holds a q, and the supervised tokens
    hold every z of the replies that survive truncation (no more, no fewer)."""
    from vistune.data_prep import get_template

    if template == "plain":
        exchanges, system = exchanges[:1], None  # plain: one caption, no system prompt
    if style == "llava":
        turns = ([{"from": "system", "value": system}] if system else []) + [
            t for k, (q, a) in enumerate(exchanges)
            for t in ({"from": "human", "value": "<image>\n" * (n_images if k == 0 else 0) + q},
                      {"from": "gpt", "value": a})]
        raw = {"id": "p", "conversations": turns, **({"image": ["x.png"] * n_images} if n_images else {})}
    else:
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            m for k, (q, a) in enumerate(exchanges)
            for m in ({"role": "user", "content": [{"type": "image", "image": "x.png"}] * (n_images if k == 0 else 0)
                       + [{"type": "text", "text": q}]}, {"role": "assistant", "content": a})]
        raw = {"id": "p", "messages": msgs}
    record = parse_record(raw, 0)
    try:
        tok = tokenize_record(record, tokenizer, get_template(template), num_image_tokens=4, max_length=max_length)
    except RecordError as err:
        assert err.problem in ("too_long", "no_supervised_tokens") and str(err)
        return
    assume(tok.turns_kept > 0)
    supervised = [t for t, lab in zip(tok.input_ids, tok.labels) if lab != IGNORE_INDEX]
    assert all(lab in (IGNORE_INDEX, t) for t, lab in zip(tok.input_ids, tok.labels))
    pieces = [tokenizer.decode([t]) for t in supervised]
    assert not any("q" in p for p in pieces)
    kept = [a for _, a in exchanges[: tok.turns_kept]]
    assert sum(p.count("z") for p in pieces) == sum(a.count("z") for a in kept)
    unsupervised = [tokenizer.decode([t]) for t, lab in zip(tok.input_ids, tok.labels) if lab == IGNORE_INDEX]
    assert not any("z" in p for p in unsupervised)
    assert len(tok.input_ids) <= max_length

