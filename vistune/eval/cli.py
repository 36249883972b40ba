"""`vistune eval score|compare|run` and `vistune chat`: parse, call one library function, print."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from vistune.eval.benchmarks import BENCHMARKS

    names = ", ".join([*BENCHMARKS, "loss"])
    parser = subparsers.add_parser("eval", help="run benchmarks, score predictions files, compare runs")
    sub = parser.add_subparsers(dest="eval_command", metavar="ACTION", required=True)

    score = sub.add_parser("score", help="score an existing predictions JSONL (no model)")
    score.add_argument("--benchmark", required=True, help=f"one of: {', '.join(BENCHMARKS)}")
    score.add_argument("--predictions", required=True, help="JSONL: question_id, prediction, reference fields")
    score.add_argument("--out", help="write the metrics here as JSON")
    _scorer_args(score)
    score.set_defaults(func=_score)

    compare = sub.add_parser("compare", help="side-by-side metrics of two runs")
    compare.add_argument("run_a", help="run directory or metrics.json")
    compare.add_argument("run_b", help="run directory or metrics.json")
    compare.set_defaults(func=_compare)

    run = sub.add_parser("run", help="generate answers for a benchmark file, then score them (resumable)")
    _model_args(run)
    run.add_argument("--benchmark", required=True, help=f"one of: {names}")
    run.add_argument("--data", required=True, help="the benchmark's question file or folder")
    run.add_argument("--image-root", help="images are relative to this (default: the data file's folder)")
    run.add_argument("--out", required=True, help="run directory (predictions.jsonl, metrics.json)")
    run.add_argument("--limit", type=int, help="only the first N questions")
    _generation_args(run)
    _scorer_args(run)
    run.set_defaults(func=_run)

    chat = subparsers.add_parser("chat", help="chat with a trained model about an image")
    _model_args(chat)
    chat.add_argument("--image", help="the image to talk about")
    chat.add_argument("--prompt", help="answer this once and exit (default: interactive)")
    _generation_args(chat, max_new_tokens=256)
    chat.set_defaults(func=_chat)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run dir, checkpoint dir or exported HF Llava directory")
    p.add_argument("--adapter", help="a PEFT adapter directory to apply")
    p.add_argument("--template", help="override the conversation template")
    p.add_argument("--dtype", default="float32")


def _generation_args(p: argparse.ArgumentParser, max_new_tokens: int | None = None) -> None:
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens,
                   help="default: the benchmark's (16), or 256 for chat")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)


def _scorer_args(p: argparse.ArgumentParser) -> None:
    from vistune.eval.scorers import DEFAULT_MMBENCH_RULE, MMBENCH_RULES

    p.add_argument("--mmbench-rule", choices=list(MMBENCH_RULES),
                   help=f"VLMEvalKit answer-matcher version for mmbench (default {DEFAULT_MMBENCH_RULE}, current; "
                        "2024-02 = the rule until August 2025; see docs/eval.md)")


def _score_settings(args) -> dict[str, str] | None:
    """The scorer overrides named on the command line; None (exit 2) when the benchmark has no such setting."""
    if args.mmbench_rule is None:
        return {}
    if args.benchmark != "mmbench":
        print(f"error: --mmbench-rule applies to --benchmark mmbench, not {args.benchmark}", file=sys.stderr)
        return None
    return {"rule": args.mmbench_rule}


def _settings(args, default_max: int):
    from vistune.eval.generate import GenerationSettings

    return GenerationSettings(max_new_tokens=args.max_new_tokens or default_max, temperature=args.temperature,
                              top_p=args.top_p, batch_size=args.batch_size, seed=args.seed)


def _score(args) -> int:
    from vistune.eval.report import format_table, score_file, write_metrics

    settings = _score_settings(args)
    if settings is None:
        return 2
    result = score_file(args.benchmark, args.predictions, settings)
    print(format_table(result))
    if args.out:
        print(f"wrote {write_metrics(result, args.out)}")
    return 0


def _compare(args) -> int:
    from vistune.eval.report import compare_runs

    print(compare_runs(args.run_a, args.run_b))
    return 0


def _run(args) -> int:
    from vistune.eval.benchmarks import BENCHMARKS
    from vistune.eval.report import format_table
    from vistune.eval.runner import EvalRunConfig, run_eval

    bench = BENCHMARKS.get(args.benchmark)
    settings = _score_settings(args)
    if settings is None:
        return 2
    config = EvalRunConfig(
        model=args.model, adapter=args.adapter, benchmark=args.benchmark, data=args.data, out=args.out,
        image_root=args.image_root, limit=args.limit, template=args.template, dtype=args.dtype,
        generation=_settings(args, bench.max_new_tokens if bench else 16), score_settings=settings,
    )
    result = run_eval(config)
    print(format_table(result))
    if "questions" in result:
        print(f"answered {result['answered']} / {result['questions']} questions -> {args.out}")
    return 0


def _chat(args) -> int:
    from vistune.eval.chat import chat
    from vistune.eval.generate import Generator
    from vistune.eval.loading import load_model

    model, processor, template = load_model(args.model, args.adapter, args.dtype)
    generator = Generator(model, processor, args.template or template, settings=_settings(args, 256))
    chat(generator, args.image, args.prompt)
    return 0
