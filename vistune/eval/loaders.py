"""Read each benchmark's standard local files into `EvalItem`s.

Every loader also accepts the generic vistune form: JSONL (or a JSON list) of
`{"question_id", "image", "question", ...reference fields}` as documented in docs/eval.md. The
LLaVA-1.5 prompt suffix is appended here unless the question already ends with it.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from vistune import IMAGE_TOKEN
from vistune.eval.items import EvalItem, read_jsonl

SHORT_ANSWER = "Answer the question using a single word or phrase."
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."
VIZWIZ_SUFFIX = "When the provided information is insufficient, respond with 'Unanswerable'.\n" + SHORT_ANSWER


def with_suffix(question: str, suffix: str) -> str:
    question = question.strip()
    if not suffix or question.endswith(suffix):
        return question
    return f"{question}\n{suffix}"


def strip_image_token(text: str) -> str:
    return text.replace(IMAGE_TOKEN + "\n", "").replace("\n" + IMAGE_TOKEN, "").replace(IMAGE_TOKEN, "").strip()


def load_records(path: str | Path) -> list[dict]:
    """Records of a .jsonl, a .json list, a `{"data": [...]}` file or a `{id: record}` mapping."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:  # JSON lines under a .json name (POPE's coco_pope_*.json)
        return read_jsonl(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return data["data"]
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        return [{"question_id": k, **v} for k, v in data.items()]
    return [data] if isinstance(data, dict) else data


def _question(record: dict) -> str:
    for key in ("question", "text"):
        if key in record:
            return strip_image_token(str(record[key]))
    raise KeyError(f"record {record.get('question_id')!r} has no 'question' or 'text'")


def _generic(record: dict, suffix: str, reference: dict, qid=None, image=None) -> EvalItem:
    return EvalItem(
        question_id=str(qid if qid is not None else record["question_id"]),
        prompt=with_suffix(_question(record), suffix),
        image=image if image is not None else record.get("image"),
        reference=reference,
    )


def load_vqa(path: str | Path, suffix: str = SHORT_ANSWER) -> list[EvalItem]:
    """VQAv2 / TextVQA (`TextVQA_0.5.1_val.json`) / VizWiz (`val.json`) or generic rows with `answers`."""
    items = []
    for r in load_records(path):
        answers = [a["answer"] if isinstance(a, dict) else str(a) for a in r["answers"]]
        qid = r.get("question_id", r.get("image"))
        image = r.get("image") or (f"{r['image_id']}.jpg" if "image_id" in r else None)
        ref = {"answers": answers}
        if r.get("answer_type"):
            ref["answer_type"] = r["answer_type"]
        items.append(_generic(r, suffix, ref, qid=qid, image=image))
    return items


def load_gqa(path: str | Path) -> list[EvalItem]:
    """GQA `testdev_balanced_questions.json` ({qid: {imageId, question, answer}}) or generic rows."""
    items = []
    for r in load_records(path):
        image = r.get("image") or (f"{r['imageId']}.jpg" if "imageId" in r else None)
        items.append(_generic(r, SHORT_ANSWER, {"answer": r["answer"]}, image=image))
    return items


def load_pope(path: str | Path) -> list[EvalItem]:
    """POPE `coco_pope_<category>.json` (JSONL: question_id, image, text, label) or a directory of them."""
    path = Path(path)
    files = sorted(path.glob("*.json*")) if path.is_dir() else [path]
    items = []
    for file in files:
        default_category = file.stem.removeprefix("coco_pope_") if file.stem.startswith("coco_pope_") else None
        for r in load_records(file):
            category = r.get("category") or default_category
            qid = r["question_id"] if len(files) == 1 else f"{category}/{r['question_id']}"
            ref = {"label": r["label"], **({"category": category} if category else {})}
            items.append(_generic(r, SHORT_ANSWER, ref, qid=qid))
    return items


def load_sqa(path: str | Path) -> list[EvalItem]:
    """ScienceQA in LLaVA's conversation form (`llava_test_CQM-A.json`) or generic rows with `answer`."""
    items = []
    for r in load_records(path):
        if "conversations" in r:
            question = strip_image_token(r["conversations"][0]["value"])
            gold = str(r["conversations"][1]["value"]).strip()
            found = re.findall(r"The answer is ([A-Z])", gold)
            answer = found[-1] if found else gold[:1]
            qid, record = r["id"], {"question": question}
        else:
            answer, qid, record = r["answer"], r["question_id"], r
        question = _question(record)
        ref = {"answer": answer, "has_image": bool(r.get("image"))}
        n = len(re.findall(r"\([A-E]\) ", question))
        if n:
            ref["num_choices"] = n
        items.append(EvalItem(str(qid), with_suffix(question, LETTER_ANSWER), r.get("image"), reference=ref))
    return items


def load_mme(path: str | Path) -> list[EvalItem]:
    """MME_Benchmark_release_version/ (per-subtask folders of images + question/answer .txt) or generic rows."""
    path = Path(path)
    if not path.is_dir():
        return [_generic(r, SHORT_ANSWER, {"answer": r["answer"], "category": r["category"], "image": r["image"]})
                for r in load_records(path)]
    items = []
    for task_dir in sorted(p for p in path.iterdir() if p.is_dir()):
        qa_dir = task_dir / "questions_answers_YN" if (task_dir / "questions_answers_YN").is_dir() else task_dir
        img_dir = task_dir / "images" if (task_dir / "images").is_dir() else task_dir
        for txt in sorted(qa_dir.glob("*.txt")):
            image = next((p for p in img_dir.glob(txt.stem + ".*") if p.suffix != ".txt"), None)
            if image is None:
                continue
            for k, line in enumerate(txt.read_text(encoding="utf-8").splitlines()):
                if "\t" not in line:
                    continue
                question, answer = line.split("\t")[:2]
                rel = str(image.relative_to(path))
                ref = {"answer": answer.strip(), "category": task_dir.name, "image": rel}
                items.append(EvalItem(f"{task_dir.name}/{txt.stem}/{k}", with_suffix(question, ""), rel,
                                      reference=ref))
    return items


def load_mmbench(path: str | Path, circular: bool = True) -> list[EvalItem]:
    """MMBench TSV (index, question, hint, A-D, answer, category, base64 image): one item per rotation."""
    items = []
    with open(path, encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            letters = [c for c in "ABCD" if _present(r.get(c))]
            texts = [r[c] for c in letters]
            gold = letters.index(r["answer"]) if r.get("answer") in letters else None
            for k in range(len(letters) if circular else 1):
                rotated = texts[k:] + texts[:k]
                options = dict(zip(letters, rotated, strict=True))
                question = r["question"] if not _present(r.get("hint")) else f"{r['hint']}\n{r['question']}"
                prompt = question + "".join(f"\n{c}. {t}" for c, t in options.items())
                ref = {"index": r["index"], "round": k, "options": options, "category": r.get("category", "")}
                if gold is not None:
                    ref["answer"] = letters[(gold - k) % len(letters)]
                items.append(EvalItem(f"{r['index']}/{k}", with_suffix(prompt, LETTER_ANSWER),
                                      image_b64=r.get("image"), reference=ref))
    return items


def load_shapes(path: str | Path) -> list[EvalItem]:
    """The synthetic held-out set (LLaVA JSON from `vistune data synth`): every human/gpt pair is a question."""
    items = []
    for r in load_records(path):
        if "conversations" not in r:
            items.append(_generic(r, "", {"answer": r["answer"], "question_type": r.get("question_type", "all")}))
            continue
        turns = r["conversations"]
        pairs = [(turns[i], turns[i + 1]) for i in range(0, len(turns) - 1, 2)]
        types = r.get("question_types") or [r.get("question_type", "all")] * len(pairs)
        for k, ((human, gpt), qtype) in enumerate(zip(pairs, types, strict=False)):
            qid = r["id"] if len(pairs) == 1 else f"{r['id']}#{k}"
            ref = {"answer": gpt["value"], "question_type": qtype}
            items.append(EvalItem(str(qid), strip_image_token(human["value"]), r.get("image"), reference=ref))
    return items


def _present(value) -> bool:
    return value is not None and str(value).strip() not in ("", "nan", "NaN", "None")
