"""Readers: every format yields the same Record; bad records are skipped and reported, never raised."""

from __future__ import annotations

import json

import pytest
from data_fixtures import llava, write_json
from PIL import Image

from vistune.data_prep import DataFileError, Record, SkipLog, Turn, load_records

EXPECTED = Record(id="r1", images=["a.png"], turns=[Turn("user", "What colour?"), Turn("assistant", "red")])


def test_llava_json_with_text_only_and_multi_image(tmp_path):
    data = [
        llava("r1", "a.png", ("What colour?", "red")),
        llava("t1", None, ("Say hi", "hi"), ("Again", "hi again")),
        llava("m1", ["a.png", "b.png"], ("Compare", "same")),
    ]
    records = load_records(write_json(tmp_path / "d.json", data))
    assert records[0] == EXPECTED
    assert records[1].images == [] and [t.role for t in records[1].turns] == ["user", "assistant"] * 2
    assert records[2].images == ["a.png", "b.png"] and records[2].turns[0].text == "Compare"


def test_llava_jsonl_and_system_turn(tmp_path):
    rec = llava("r1", "a.png", ("What colour?", "red"))
    rec["conversations"].insert(0, {"from": "system", "value": "Be brief."})
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(rec) + "\n\n" + json.dumps(llava("r2", None, ("q", "a"))) + "\n")
    records = load_records(path)
    assert [r.id for r in records] == ["r1", "r2"]
    assert records[0].system == "Be brief." and records[0].turns == EXPECTED.turns


def test_messages_string_and_typed_parts(tmp_path):
    data = [
        {"id": "r1", "images": ["a.png"], "messages": [
            {"role": "user", "content": "<image>What colour?"}, {"role": "assistant", "content": "red"}]},
        {"id": "r1b", "messages": [
            {"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "What colour?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]},
    ]
    records = load_records(write_json(tmp_path / "m.json", data), fmt="messages")
    assert records[0] == EXPECTED
    assert records[1].images == EXPECTED.images and records[1].turns == EXPECTED.turns


def _png_bytes(colour):
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_hf_save_to_disk_with_embedded_images(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({
        "id": ["r1", "r2"],
        "image": [{"bytes": _png_bytes((255, 0, 0)), "path": "x.png"}, {"bytes": _png_bytes((0, 0, 255)), "path": "y.png"}],
        "conversations": [[{"from": "human", "value": "What colour?"}, {"from": "gpt", "value": "red"}],
                          [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "blue"}]],
    }).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "hf"))
    records = load_records(tmp_path / "hf")
    assert [r.id for r in records] == ["r1", "r2"]
    from vistune.data_prep import load_image

    first = load_image(records[0].images[0], records[0].image_root)  # untagged image goes to the front
    assert first.getpixel((0, 0)) == (255, 0, 0) and records[0].turns == EXPECTED.turns


def test_parquet_dir_with_path_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "pq").mkdir()
    table = pa.Table.from_pylist([{"id": "r1", "image": "a.png", "messages": [
        {"role": "user", "content": "What colour?"}, {"role": "assistant", "content": "red"}]}])
    pq.write_table(table, tmp_path / "pq" / "train-0.parquet")
    assert load_records(tmp_path / "pq") == [EXPECTED]


BAD = [
    ({"id": "x", "conversations": "hi"}, "bad_shape", "conversations"),
    ({"id": "x", "conversations": [{"from": "robot", "value": "q"}]}, "unknown_role", "conversations[0].from"),
    ({"id": "x", "conversations": []}, "empty_conversation", "conversations"),
    ({"id": "x", "conversations": [{"from": "gpt", "value": "a"}]}, "role_order", "conversations[0]"),
    ({"id": "x", "conversations": [{"from": "human", "value": "q"}]}, "role_order", "conversations"),
    ({"id": "x", "conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "a"}]}, "bad_shape",
     "conversations[0].value"),
    (llava("x", None, ("q", " ")), "empty_reply", "conversations[1]"),
    (llava("x", None, ("<image>\nq", "a")), "image_tag_mismatch", "image"),
    ({"id": "x", "image": "a.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
     "image_tag_mismatch", "image"),
    (llava("x", None, ("q", "see <image> here")), "image_tag_in_reply", "conversations[1]"),
    ({"id": "x", "image": 5, "conversations": []}, "bad_shape", "image"),
    ({"id": {"a": 1}, "conversations": []}, "bad_shape", "id"),
    ("just a string", "bad_shape", None),
]


@pytest.mark.parametrize("raw,problem,field", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_each_bad_record_is_skipped_with_its_reason(tmp_path, raw, problem, field):
    path = write_json(tmp_path / "d.json", [llava("good", None, ("q", "a")), raw])
    skips = SkipLog()
    records = load_records(path, skips=skips)
    assert [r.id for r in records] == ["good"]
    (skip,) = skips.items
    assert (skip.problem, skip.field, skip.index, skip.source, skip.stage) == (problem, field, 1, path, "read")


def test_malformed_jsonl_line_non_utf8_and_duplicate_id(tmp_path):
    good = json.dumps(llava("a", None, ("q", "x"))).encode()
    bad_utf8 = json.dumps(llava("b", None, ("q", "PLACEHOLDER"))).encode().replace(b"PLACEHOLDER", b"\xff\xfe")
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join([good, b"{not json", bad_utf8, good]))
    skips = SkipLog()
    assert [r.id for r in load_records(path, skips=skips)] == ["a"]
    assert [(s.problem, s.index, s.id) for s in skips] == [("bad_json", 1, "#1"), ("bad_text", 2, "b"), ("duplicate_id", 3, "a")]
    out = skips.write_jsonl(tmp_path / "skipped.jsonl")
    assert [json.loads(line)["problem"] for line in out.read_text().splitlines()] == ["bad_json", "bad_text", "duplicate_id"]


def test_unreadable_file_raises_naming_it(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("[{oops")
    with pytest.raises(DataFileError, match="broken.json"):
        load_records(path)
    with pytest.raises(DataFileError, match="nope.json"):
        load_records(tmp_path / "nope.json")
