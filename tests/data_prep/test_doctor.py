"""The data doctor and the `vistune data` commands: one fixture per problem, exit codes, --fix, synth."""

from __future__ import annotations

import json

import pytest
from data_fixtures import llava, one_of_each_problem, write_json

from vistune.cli import main
from vistune.data_prep import PROBLEMS, Record, Rendered, Template, Turn, load_records, tokenize_record
from vistune.data_prep.doctor import diagnose
from vistune.data_prep.text.text_side import load_text_side


@pytest.fixture(scope="module")
def text_side(tiny_parts):
    return load_text_side("tiny")


def test_text_side_matches_build_llava(text_side, tokenizer):
    assert text_side.num_image_tokens == 16 and text_side.template == "vicuna_v1"
    assert text_side.tokenizer.convert_tokens_to_ids("<image>") == tokenizer.convert_tokens_to_ids("<image>")
    assert text_side.tokenizer.pad_token_id == tokenizer.pad_token_id


@pytest.mark.parametrize("keep_records", [True, False], ids=["records", "cache"])
def test_each_problem_is_reported_with_its_record_id(tmp_path, text_side, keep_records):
    lines = one_of_each_problem(tmp_path / "data")
    path = tmp_path / "data" / "d.jsonl"
    path.write_bytes(b"\n".join(lines.values()))
    report = diagnose(path, max_length=256, text_side=text_side, workers=2, keep_records=keep_records,
                      cache_dir=tmp_path / "cache")
    found = {s.problem: s.id for s in report.errors}
    expected = {k: (f"#{list(lines).index(k)}" if k == "bad_json" else "good" if k == "duplicate_id" else k) for k in lines if k != "good"}
    assert found == expected
    assert report.good_ids == ["good"] and not report.ok
    assert set(found) <= set(PROBLEMS)


def test_the_cached_doctor_reports_what_the_record_doctor_reports(tmp_path, text_side):
    """Same errors (in the same order, with the same reasons), warnings and histograms through the cache."""
    from PIL import Image

    lines = one_of_each_problem(tmp_path / "data")
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "t.png")
    lines["truncated"] = json.dumps(llava("truncated", "t.png", ("q", "a"), ("word " * 200, "b"))).encode()
    path = tmp_path / "data" / "d.jsonl"
    path.write_bytes(b"\n".join(lines.values()))
    a, b = (diagnose(path, max_length=128, text_side=text_side, keep_records=k, cache_dir=tmp_path / "c")
            for k in (True, False))
    assert a.to_dict(first=50) == b.to_dict(first=50) and a.good_ids == b.good_ids
    assert [s.problem for s in b.warnings] == ["truncated"]


def test_the_cached_doctor_counts_anyres_images_by_size_as_the_record_doctor(tmp_path, tiny_parts):
    """arch llava_next through the cache: the same per-image counts, too_long reasons and lengths."""
    from PIL import Image

    root = tmp_path / "data"
    root.mkdir()
    for name, size in (("s.png", (20, 20)), ("w.png", (90, 30)), ("t.png", (30, 100))):
        Image.new("RGB", size).save(root / name)
    data = [llava("s", "s.png", ("q", "a")), llava("w", "w.png", ("q", "a")), llava("t", "t.png", ("q", "a")),
            llava("many", ["t.png", "w.png", "s.png", "t.png"], ("q", "a")),
            llava("cut", "w.png", ("q", "a"), ("word " * 60, "b"))]
    path = write_json(root / "d.json", data)
    side = load_text_side("tiny", "llava_next")
    a, b = (diagnose(path, max_length=150, text_side=side, keep_records=k, cache_dir=tmp_path / "c")
            for k in (True, False))
    assert a.to_dict(first=50) == b.to_dict(first=50) and a.good_ids == b.good_ids == ["s", "w", "t", "cut"]
    assert len(set(b.token_lengths[:3])) == 3  # three sizes, three counts
    assert [s.id for s in b.errors] == ["many"] and "image tokens: " in b.errors.items[0].reason
    assert [s.id for s in b.warnings] == ["cut"]


def test_cli_validate_exit_codes_report_and_fix(tmp_path, capsys):
    lines = one_of_each_problem(tmp_path / "data")
    path = tmp_path / "data" / "d.jsonl"
    path.write_bytes(b"\n".join(lines.values()))
    report_file, fixed = tmp_path / "report.json", tmp_path / "fixed.json"
    assert main(["data", "validate", str(path), "--max-length", "256", "--report", str(report_file),
                 "--fix", str(fixed)]) == 1
    out = capsys.readouterr().out
    assert "corrupt_image" in out and "image_escapes_root" in out
    report = json.loads(report_file.read_text())
    assert report["bad"] == len(lines) - 1 and report["good"] == 1
    assert report["errors"]["missing_image"]["first"][0]["id"] == "missing_image"
    assert [r.id for r in load_records(fixed)] == ["good"]
    assert main(["data", "validate", str(fixed), "--image-root", str(tmp_path / "data")]) == 0


def test_truncation_is_a_warning_not_an_error(tmp_path, text_side):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    path = write_json(tmp_path / "d.json", [llava("t", "a.png", ("q", "a"), ("word " * 200, "b"))])
    report = diagnose(path, max_length=128, text_side=text_side, cache_dir=tmp_path / "cache")
    assert report.ok and [s.problem for s in report.warnings] == ["truncated"]
    assert report.to_dict()["images_per_record"] == {"1": 1}


def test_no_supervised_token_guard(tokenizer):
    class Silent(Template):  # a template that supervises nothing (stands in for a broken chat template)
        name, jinja = "silent", None

        def render(self, record, tokenizer=None):
            return Rendered("USER: hi ASSISTANT: hello", [], [len("USER: hi ASSISTANT: hello")])

    record = Record("r", [], [Turn("user", "hi"), Turn("assistant", "hello")])
    with pytest.raises(ValueError) as err:
        tokenize_record(record, tokenizer, Silent(), num_image_tokens=1, max_length=100)
    assert err.value.problem == "no_supervised_tokens"


def test_synth_then_validate_reports_no_error(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--n", "40", "--seed", "3"]) == 0
    for name, template in (("align", "plain"), ("instruct", "vicuna_v1"), ("heldout", "vicuna_v1")):
        assert main(["data", "validate", str(out / f"{name}.json"), "--template", template]) == 0
    assert "0 with errors" in capsys.readouterr().out


def test_stats_and_convert_round_trip(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    data = [llava("r1", "a.png", ("What colour?", "red")), llava("r2", None, ("hi", "hello"), ("again", "bye"))]
    data[0]["question_type"] = "colour"
    src = write_json(tmp_path / "d.json", data)
    assert main(["data", "stats", src]) == 0
    assert "text-only         1" in capsys.readouterr().out
    original = load_records(src)
    for to, out in (("messages", tmp_path / "m.jsonl"), ("hf", tmp_path / "hf"), ("llava", tmp_path / "l.json")):
        assert main(["data", "convert", src, "--to", to, str(out)]) == 0
        back = load_records(out)
        assert [(r.id, r.images, r.turns) for r in back] == [(r.id, r.images, r.turns) for r in original]
    assert load_records(tmp_path / "l.json")[0].extra == {"question_type": "colour"}


def test_the_doctor_checks_rl_prompts_in_both_forms(tmp_path, text_side, capsys):
    """Stage rl's prompts: every record without an answer, with a missing image, a duplicate id or a prompt that
    leaves no room for a completion is named; `{image, question, answer}` rows are recognised as rl prompts."""
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    records = [llava("good", "a.png", ("What colour?", "red")), llava("no-answer", "a.png", ("What colour?", "red")),
               llava("no-image", "gone.png", ("What colour?", "red")), llava("good", "a.png", ("Again?", "red"))]
    records[1]["conversations"] = records[1]["conversations"][:1]
    path = write_json(tmp_path / "rl.json", records)
    report = diagnose(path, text_side=text_side, max_length=128, rl=True)
    assert report.good_ids == ["good"]
    assert {(s.id, s.problem) for s in report.errors} == {("no-answer", "role_order"), ("no-image", "missing_image"),
                                                          ("good", "duplicate_id")}
    assert "no reference answer" in next(s.reason for s in report.errors if s.id == "no-answer")
    rows = write_json(tmp_path / "rows.json", [
        {"id": "q0", "image": "a.png", "question": "What colour?", "answer": "red"},
        {"id": "q1", "image": "a.png", "question": "What colour?", "answer": " "},
        {"id": "q2", "image": "a.png", "question": "word " * 200, "answer": "red"}])
    assert main(["data", "validate", str(rows), "--max-length", "128"]) == 1
    out = capsys.readouterr().out
    assert "3 records, 1 good, 2 with errors" in out and "q1" in out and "q2" in out
    assert "no reference answer" in out and "leaving none of 128 for the completion" in out
