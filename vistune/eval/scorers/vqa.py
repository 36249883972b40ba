"""Open-answer VQA accuracy exactly as the reference evaluators compute it (VQAv2, VizWiz, TextVQA).

Three reference programs differ in small ways and each benchmark's published number comes from one of them:
the official VQA `vqaEval.py` (VQAv2; answers first cleaned by LLaVA's EvalAI answer processor before
upload), the VizWiz evaluator (same cleaning, ground truth compared raw) and MMF's `m4c_evaluator.py`
(TextVQA: both sides cleaned by the EvalAI processor). The rules, tables and even the quirks
(the never-matching look-behind in the period regex, the substitution count of 32) are reproduced here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# --- tables shared by vqaEval.py and the EvalAI answer processor -------------------------------------

CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = ("a", "an", "the")
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
               ",", "?", "!")
# `(?!<=\d)` is a look-ahead typo for a look-behind in the reference; it never fires, so every "." not
# followed by a digit is removed ("1.5" keeps its point, "5." loses it).
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")  # vqaEval.py
EVALAI_COMMA_STRIP = re.compile(r"(?<=\d)(,)+(?=\d)")  # m4c_evaluator.py
_REFERENCE_SUB_COUNT = int(re.UNICODE)  # the reference passes re.UNICODE (32) as `count`: at most 32 periods go


def process_punctuation(text: str, comma_strip: re.Pattern = COMMA_STRIP) -> str:
    """Removes punctuation next to a space (or anywhere, if the text has a digit,digit comma), else spaces it."""
    out = text
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or comma_strip.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=_REFERENCE_SUB_COUNT)


def process_digit_article(text: str) -> str:
    """Lower-cases, maps number words to digits, drops articles, restores contractions (word by word)."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa(text: str) -> str:
    """vqaEval.py's treatment of a predicted answer: whitespace, punctuation, then digits/articles."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def normalize_evalai(text: str) -> str:
    """The EvalAI answer processor (m4c_evaluator.EvalAIAnswerProcessor), used by LLaVA on every answer."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    text = process_punctuation(text, EVALAI_COMMA_STRIP)
    return process_digit_article(text)


def leave_one_out_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """min(#other annotators who gave `prediction` / 3, 1), averaged over leaving each annotator out."""
    if not answers:
        raise ValueError("a VQA question needs its human answers")
    accs = []
    for i in range(len(answers)):
        matches = sum(1 for j, a in enumerate(answers) if j != i and a == prediction)
        accs.append(min(1.0, matches / 3))
    return sum(accs) / len(accs)


def vqav2_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQAv2 (LLaVA pipeline): EvalAI-clean the prediction, then vqaEval.py.

    vqaEval.py normalises the prediction, and the human answers (punctuation only) only when they disagree.
    """
    pred = normalize_vqa(normalize_evalai(prediction))
    gts = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    return leave_one_out_accuracy(pred, gts)


def vizwiz_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VizWiz (LLaVA pipeline): EvalAI-clean the prediction, then the VizWiz evaluator (answers compared raw)."""
    return leave_one_out_accuracy(normalize_vqa(normalize_evalai(prediction)), list(answers))


def textvqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """TextVQA (m4c_evaluator.TextVQAAccuracyEvaluator): both sides EvalAI-cleaned, then leave-one-out."""
    return leave_one_out_accuracy(normalize_evalai(prediction), [normalize_evalai(a) for a in answers])


def score_vqa_rows(rows: Sequence[dict], accuracy=vqav2_accuracy) -> dict[str, float]:
    """Mean accuracy (percent) over rows with `prediction` and `answers`; per `answer_type` where present."""
    if not rows:
        return {"accuracy": 0.0, "count": 0}
    per_type: dict[str, list[float]] = {}
    total = []
    for row in rows:
        acc = accuracy(row.get("prediction") or "", [_answer_text(a) for a in row["answers"]])
        total.append(acc)
        if row.get("answer_type"):
            per_type.setdefault(str(row["answer_type"]), []).append(acc)
    metrics: dict[str, float] = {"accuracy": 100 * sum(total) / len(total), "count": len(total)}
    for name, accs in sorted(per_type.items()):
        metrics[f"accuracy/{name}"] = 100 * sum(accs) / len(accs)
    return metrics


def _answer_text(answer) -> str:
    """Human answers come as strings or as the annotation files' {"answer": ..., ...} dicts."""
    return answer["answer"] if isinstance(answer, dict) else str(answer)
