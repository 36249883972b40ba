"""The benchmark registry: a name -> how to load its questions, how to score its predictions.

Adding a benchmark is one `Benchmark` entry; `vistune eval run/score` and docs/eval.md go by these names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from vistune.eval import loaders
from vistune.eval.items import EvalItem
from vistune.eval.scorers import (
    DEFAULT_MMBENCH_RULE,
    score_gqa_rows,
    score_mmbench_rows,
    score_mme_rows,
    score_pope_rows,
    score_shapes_rows,
    score_sqa_rows,
    score_vqa_rows,
    textvqa_accuracy,
    vizwiz_accuracy,
    vqav2_accuracy,
)


@dataclass(frozen=True)
class Benchmark:
    name: str
    load: Callable[[str | Path], list[EvalItem]]  # a benchmark file (or folder) -> questions
    score: Callable[..., dict[str, float]]  # predictions-file rows (+ keyword `score_settings`) -> metrics
    primary: str  # the metric the papers report
    reference_fields: tuple[str, ...]  # fields a predictions line needs besides question_id / prediction
    suffix: str  # the LLaVA-1.5 instruction appended to each question
    max_new_tokens: int = 16  # enough for the expected answer format
    note: str = ""
    score_settings: dict[str, str] = field(default_factory=dict)  # keyword settings of `score`, with defaults

    def resolve_settings(self, settings: dict[str, str] | None = None) -> dict[str, str]:
        """The scorer settings to use: the defaults, overridden by `settings`; an unknown name is an error."""
        unknown = sorted(set(settings or {}) - set(self.score_settings))
        if unknown:
            known = ", ".join(self.score_settings) or "none"
            raise ValueError(f"benchmark {self.name} has no scorer setting {unknown} (it has: {known})")
        return {**self.score_settings, **(settings or {})}


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("vqav2", loaders.load_vqa, partial(score_vqa_rows, accuracy=vqav2_accuracy), "accuracy",
                  ("answers",), loaders.SHORT_ANSWER, note="VQA accuracy (official vqaEval.py)"),
        Benchmark("textvqa", loaders.load_vqa, partial(score_vqa_rows, accuracy=textvqa_accuracy), "accuracy",
                  ("answers",), loaders.SHORT_ANSWER, note="VQA accuracy (m4c_evaluator)"),
        Benchmark("vizwiz", partial(loaders.load_vqa, suffix=loaders.VIZWIZ_SUFFIX),
                  partial(score_vqa_rows, accuracy=vizwiz_accuracy), "accuracy", ("answers",),
                  loaders.VIZWIZ_SUFFIX, note="VQA accuracy (VizWiz evaluator)"),
        Benchmark("gqa", loaders.load_gqa, score_gqa_rows, "accuracy", ("answer",), loaders.SHORT_ANSWER,
                  note="exact match"),
        Benchmark("pope", loaders.load_pope, score_pope_rows, "f1", ("label", "category"), loaders.SHORT_ANSWER,
                  note="F1 (mean over categories), accuracy, precision, recall, yes-ratio"),
        Benchmark("sqa", loaders.load_sqa, score_sqa_rows, "img_accuracy", ("answer", "has_image"),
                  loaders.LETTER_ANSWER, note="ScienceQA-IMG option-letter accuracy"),
        Benchmark("mmbench", loaders.load_mmbench, score_mmbench_rows, "circular_accuracy",
                  ("index", "round", "options", "answer"), loaders.LETTER_ANSWER, note="circular evaluation",
                  score_settings={"rule": DEFAULT_MMBENCH_RULE}),
        Benchmark("mme", loaders.load_mme, score_mme_rows, "perception", ("answer", "category", "image"),
                  loaders.SHORT_ANSWER, note="perception / cognition = sum of (acc + acc+)"),
        Benchmark("shapes", loaders.load_shapes, score_shapes_rows, "accuracy", ("answer", "question_type"), "",
                  note="synthetic held-out set: exact match per question type, with chance levels"),
    ]
}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None
