"""`vistune eval score` on a hand-made predictions file and `vistune eval compare` of two runs."""

import json

import pytest

from vistune.cli import main


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_pope_file(tmp_path, capsys):
    rows = [
        {"question_id": 1, "prediction": "Yes.", "label": "yes", "category": "random"},
        {"question_id": 2, "prediction": "No, there is not.", "label": "no", "category": "random"},
        {"question_id": 3, "prediction": "yes", "label": "no", "category": "random"},
        {"question_id": 4, "prediction": "", "label": "yes", "category": "random"},
    ]
    preds = _write(tmp_path / "p.jsonl", rows)
    assert main(["eval", "score", "--benchmark", "pope", "--predictions", str(preds), "--out",
                 str(tmp_path / "m.json")]) == 0
    m = json.loads((tmp_path / "m.json").read_text())["metrics"]
    # TP 2 (rows 1, 4), FP 1 (row 3), TN 1 (row 2)
    assert m["accuracy"] == 75.0 and m["f1"] == pytest.approx(80.0) and m["yes_ratio"] == 75.0
    assert capsys.readouterr().out.splitlines()[2].startswith("f1")  # the primary metric comes first


def test_score_rejects_missing_reference_fields(tmp_path):
    preds = _write(tmp_path / "p.jsonl", [{"question_id": 1, "prediction": "yes"}])
    with pytest.raises(ValueError, match="answers"):
        main(["eval", "score", "--benchmark", "vqav2", "--predictions", str(preds)])


def test_compare(tmp_path, capsys):
    for name, acc in (("a", 50.0), ("b", 62.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(
            {"benchmark": "gqa", "primary": "accuracy", "metrics": {"accuracy": acc, "count": 8}}))
    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("accuracy"))
    assert line.split() == ["accuracy", "50.00", "62.50", "12.50"]
