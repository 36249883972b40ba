"""End to end: a tiny model trained briefly on the shapes set, evaluated with `vistune eval run`; resuming."""

import base64
import io
import json

import pytest
from PIL import Image

from vistune.cli import main
from vistune.eval import generate, score_file
from vistune.eval.items import read_jsonl


@pytest.fixture()
def asked(monkeypatch):
    """Records every question id the model is asked (wrapping the real Generator.answer)."""
    seen: list[str] = []
    real = generate.Generator.answer

    def answer(self, items):
        seen.extend(item.question_id for item in items)
        return real(self, items)

    monkeypatch.setattr(generate.Generator, "answer", answer)
    return seen


def _run(model, data, out, *extra):
    return main(["eval", "run", "--model", str(model), "--benchmark", "shapes", "--data", str(data), "--out",
                 str(out), "--batch-size", "4", *extra])


def test_eval_run_complete_and_resumable(trained_tiny, shapes_data, tmp_path, asked, capsys):
    heldout = shapes_data["heldout"]
    n = len(json.loads(heldout.read_text()))
    out = tmp_path / "run"

    assert _run(trained_tiny, heldout, out, "--limit", "5") == 0  # the "interrupted" run
    assert len(read_jsonl(out / "predictions.jsonl")) == 5
    assert len(asked) == 5

    asked.clear()
    assert _run(trained_tiny, heldout, out) == 0  # resumes: only the other questions are asked
    assert len(asked) == n - 5
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == n and len({r["question_id"] for r in rows}) == n
    assert all({"question_id", "prediction", "answer", "question_type"} <= set(r) for r in rows)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["answered"] == metrics["questions"] == n
    m = metrics["metrics"]
    assert m["count"] == n and 0 <= m["accuracy"] <= 100
    assert {"accuracy/colour", "accuracy/shape", "accuracy/count", "accuracy/position"} <= set(m)
    assert m["chance/shape"] == pytest.approx(100 / len({r["answer"] for r in rows if r["question_type"] == "shape"}))
    printed = capsys.readouterr().out
    assert "accuracy" in printed and f"answered {n} / {n}" in printed

    asked.clear()
    assert _run(trained_tiny, heldout, out) == 0  # nothing left to ask
    assert asked == []

    # `eval score` on the run's own predictions gives the same numbers with no model
    assert main(["eval", "score", "--benchmark", "shapes", "--predictions", str(out / "predictions.jsonl"),
                 "--out", str(tmp_path / "rescored.json")]) == 0
    assert json.loads((tmp_path / "rescored.json").read_text())["metrics"] == m


def test_resume_after_a_half_written_line(trained_tiny, shapes_data, tmp_path, asked):
    heldout = shapes_data["heldout"]
    n = len(json.loads(heldout.read_text()))
    out = tmp_path / "run"
    out.mkdir()
    first = {"question_id": "heldout-0", "prediction": "red", "answer": "red", "question_type": "colour"}
    (out / "predictions.jsonl").write_text(json.dumps(first) + '\n{"question_id": "heldout-1", "predi')
    assert _run(trained_tiny, heldout, out) == 0
    assert "heldout-0" not in asked and "heldout-1" in asked and len(asked) == n - 1
    rows = read_jsonl(out / "predictions.jsonl")
    assert len(rows) == n and rows[0]["prediction"] == "red"


def test_loss_benchmark(trained_tiny, shapes_data, tmp_path):
    assert main(["eval", "run", "--model", str(trained_tiny), "--benchmark", "loss", "--data",
                 str(shapes_data["instruct"]), "--out", str(tmp_path / "loss"), "--limit", "16",
                 "--template", "vicuna_v1"]) == 0
    m = json.loads((tmp_path / "loss" / "metrics.json").read_text())["metrics"]
    assert m["tokens"] > 0 and m["perplexity"] == pytest.approx(2.718281828 ** m["loss"], rel=1e-6)


def test_chat_one_answer(trained_tiny, shapes_data, capsys):
    image = shapes_data["heldout"].parent / "images" / "heldout_000000.png"
    assert main(["chat", "--model", str(trained_tiny), "--image", str(image), "--prompt", "What shape is shown?",
                 "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "assistant>" not in out  # one answer (possibly empty), then exit


def test_chat_multi_turn(trained_tiny, shapes_data):
    from vistune.eval.chat import chat
    from vistune.eval.generate import GenerationSettings, Generator
    from vistune.eval.loading import load_exported

    model, processor, template = load_exported(trained_tiny)
    g = Generator(model, processor, "vicuna_v1", settings=GenerationSettings(max_new_tokens=3))
    lines = iter(["What color is the shape?", "", "How many shapes are there?", "exit"])
    written = []
    image = shapes_data["heldout"].parent / "images" / "heldout_000001.png"
    turns = chat(g, str(image), read=lambda _: next(lines), write=written.append)
    assert [r for r, _ in turns] == ["user", "assistant", "user", "assistant"]
    assert len(written) == 2 and all(w.startswith("assistant> ") for w in written)


@pytest.mark.slow
def test_vistune_train_then_eval_run(shapes_data, tmp_path, asked):
    """The issue's acceptance path with the real trainer: `vistune train` (LoRA, a few steps), then eval run."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "instruct_lora.yaml"
    run = tmp_path / "lora"
    assert main(["train", str(recipe), "model.projector=null", f"output_dir={run}", "optim.max_steps=3",
                 "save_steps=0", f"data.path={shapes_data['instruct']}",
                 f"data.image_root={shapes_data['instruct'].parent}"]) == 0
    heldout = shapes_data["heldout"]
    n = len(json.loads(heldout.read_text()))
    assert _run(run, heldout, tmp_path / "eval", "--limit", "4") == 0
    assert _run(run, heldout, tmp_path / "eval") == 0
    assert len(asked) == n  # 4, then the n - 4 others: nobody asked twice
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["answered"] == n and metrics["template"] == "vicuna_v1"


def test_eval_run_mmbench_rule(trained_tiny, tmp_path, asked):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="PNG")
    img = base64.b64encode(buf.getvalue()).decode()
    tsv = tmp_path / "mmb.tsv"
    tsv.write_text("index\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\timage\n"
                   f"5\tWhat colour?\tnan\tred\tblue\tgreen\tyellow\tA\tcolour\t{img}\n")
    assert main(["eval", "run", "--model", str(trained_tiny), "--benchmark", "shapes", "--data", str(tsv),
                 "--out", str(tmp_path / "x"), "--mmbench-rule", "2024-02"]) == 2
    assert not asked  # refused before the model was asked anything
    out = tmp_path / "run"
    assert main(["eval", "run", "--model", str(trained_tiny), "--benchmark", "mmbench", "--data", str(tsv),
                 "--out", str(out), "--max-new-tokens", "4", "--mmbench-rule", "2024-02"]) == 0
    assert asked == ["5/0", "5/1", "5/2", "5/3"]
    result = json.loads((out / "metrics.json").read_text())
    assert result["score_settings"] == {"rule": "2024-02"}
    rescored = score_file("mmbench", out / "predictions.jsonl", {"rule": "2024-02"})
    assert rescored["metrics"] == result["metrics"]
