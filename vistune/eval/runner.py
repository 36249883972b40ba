"""`eval run`: ask a model every question of a benchmark file, append answers as they come, then score.

The predictions file is the run's state: questions whose id is already in it are not asked again, so an
interrupted run resumes where it stopped, and `--limit` runs can be extended later. `loss` is the one
benchmark without generation: it writes only metrics.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from vistune.eval.benchmarks import get_benchmark
from vistune.eval.generate import GenerationSettings, Generator
from vistune.eval.items import PredictionWriter, answered_ids, pending, read_jsonl
from vistune.eval.report import METRICS_FILE, PREDICTIONS_FILE, write_metrics

log = logging.getLogger(__name__)


@dataclass
class EvalRunConfig:
    model: str  # a run dir, checkpoint dir or exported HF Llava directory
    benchmark: str  # a BENCHMARKS name, or "loss"
    data: str  # the benchmark's question file (or folder)
    out: str  # run directory: predictions.jsonl + metrics.json
    adapter: str | None = None  # a PEFT adapter directory to apply on top of `model`
    image_root: str | None = None  # images are relative to this (default: the data file's folder)
    limit: int | None = None  # only the first N questions
    template: str | None = None  # override the model's conversation template
    dtype: str = "float32"
    aspect: str = "pad"  # image aspect mode, as in training
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    score_settings: dict[str, str] = field(default_factory=dict)  # scorer overrides, e.g. {"rule": "2024-02"}


def run_eval(config: EvalRunConfig, model_bundle: tuple | None = None) -> dict:
    """Generates the missing predictions, scores all asked questions, writes metrics.json; returns it.

    `model_bundle` = (model, processor, template) skips loading (tests, notebooks).
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    image_root = config.image_root or str(Path(config.data).parent if Path(config.data).is_file() else config.data)
    if config.benchmark != "loss":
        bench = get_benchmark(config.benchmark)
        settings = bench.resolve_settings(config.score_settings)
        bench.score([], **settings)  # a bad setting fails now, not after the generation
    model, processor, template = model_bundle or _load(config)
    template = config.template or template
    if config.benchmark == "loss":
        from vistune.eval.perplexity import heldout_loss

        metrics = heldout_loss(model, processor, template, config.data, image_root=image_root,
                               batch_size=config.generation.batch_size, aspect=config.aspect, limit=config.limit)
        result = {"benchmark": "loss", "primary": "perplexity", "metrics": metrics, **_provenance(config, template)}
        write_metrics(result, out / METRICS_FILE)
        return result

    items = bench.load(config.data)
    if config.limit:
        items = items[: config.limit]
    predictions = out / PREDICTIONS_FILE
    done = answered_ids(predictions)
    todo = list(pending(items, done))
    log.info("%s: %d questions, %d already answered, %d to ask", bench.name, len(items), len(items) - len(todo),
             len(todo))
    if todo:
        generator = Generator(model, processor, template, image_root=image_root, aspect=config.aspect,
                              settings=config.generation)
        step = max(1, config.generation.batch_size)
        start = time.perf_counter()
        with PredictionWriter(predictions) as writer:
            for i in range(0, len(todo), step):
                batch = todo[i:i + step]
                for item, answer in zip(batch, generator.answer(batch), strict=True):
                    writer.write(item, answer)
                log.info("answered %d / %d (%.1f s)", min(i + step, len(todo)), len(todo),
                         time.perf_counter() - start)
    wanted = {item.question_id for item in items}
    rows = [r for r in read_jsonl(predictions) if str(r.get("question_id")) in wanted]
    metrics = bench.score(rows, **settings)
    result = {
        "benchmark": bench.name,
        "primary": bench.primary,
        "metrics": metrics,
        "questions": len(items),
        "answered": len({str(r["question_id"]) for r in rows}),
        **({"score_settings": settings} if settings else {}),
        **_provenance(config, template),
    }
    write_metrics(result, out / METRICS_FILE)
    return result


def _load(config: EvalRunConfig):
    from vistune.eval.loading import load_model

    return load_model(config.model, config.adapter, config.dtype)


def _provenance(config: EvalRunConfig, template: str) -> dict:
    g = config.generation
    return {"model": config.model, "adapter": config.adapter, "data": config.data, "template": template,
            "generation": {"max_new_tokens": g.max_new_tokens, "temperature": g.temperature, "top_p": g.top_p}}
