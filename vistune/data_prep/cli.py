"""`vistune data ...`: validate (the data doctor), shard, stats, convert, synth, preprocess-images. Parse, call one function, print."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="check, describe, convert or synthesise visual instruction data")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    v = sub.add_parser("validate", help="the data doctor: check every record; exit 1 when any has an error")
    v.add_argument("data", help="LLaVA JSON/JSONL, messages JSON/JSONL, or a Hugging Face dataset dir")
    v.add_argument("--image-root", help="directory image paths are relative to (default: the data file's)")
    v.add_argument("--model", default="tiny", help="model preset or composed checkpoint dir (tokenizer, image tokens)")
    v.add_argument("--arch", default="llava", choices=("llava", "llava_next", "llava_onevision"),
                   help="with a preset: AnyRes archs count each image's tokens by its size (a directory says its own)")
    v.add_argument("--template", help="conversation template (default: the model's)")
    v.add_argument("--max-length", type=int, default=2048, help="tokens per sample, image tokens included")
    v.add_argument("--format", default="auto", help="auto, llava, messages, jsonl or hf")
    v.add_argument("--report", help="write the full report as JSON here")
    v.add_argument("--fix", metavar="OUT", help="write the records without errors here (LLaVA JSON); records with "
                   "a literal <image> where no image belongs are dropped, never rewritten")
    v.add_argument("--workers", type=int, default=None, help="processes for tokenising and image checks (default: every core)")
    v.add_argument("--rl", action="store_true", help="stage rl prompts: each record's last assistant turn is its "
                   "reference answer ({image, question, answer} rows are recognised without it)")
    v.set_defaults(func=_validate)

    h = sub.add_parser("shard", help="write WebDataset tar shards (KEY.json + KEY.0.jpg ...) and their index "
                       "for streaming (data.path=OUT)")
    h.add_argument("data", help="LLaVA JSON/JSONL, messages JSON/JSONL, or a Hugging Face dataset dir")
    h.add_argument("out", help="output directory for shard-NNNNNN.tar and index.json")
    h.add_argument("--image-root", help="directory image paths are relative to (default: the data file's)")
    h.add_argument("--per-shard", type=int, default=1000, help="samples per shard")
    h.add_argument("--vision", help="store images already padded and resized for this tower (preset, dir or hub id)")
    h.add_argument("--aspect", default="pad", choices=["pad", "resize"])
    h.add_argument("--format", default="auto")
    h.set_defaults(func=_shard)

    s = sub.add_parser("stats", help="records, modalities, turns, images and text lengths")
    s.add_argument("data")
    s.add_argument("--format", default="auto")
    s.set_defaults(func=_stats)

    c = sub.add_parser("convert", help="convert between LLaVA JSON, messages JSON and a Hugging Face dataset dir")
    c.add_argument("data")
    c.add_argument("--to", required=True, choices=["llava", "messages", "hf"])
    c.add_argument("out", help="output .json / .jsonl file, or a directory for --to hf")
    c.add_argument("--format", default="auto")
    c.set_defaults(func=_convert)

    y = sub.add_parser("synth", help="write the synthetic coloured-shapes dataset (LLaVA JSON + images/)")
    y.add_argument("--out", required=True)
    y.add_argument("--n", type=int, default=1000, help="training images")
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--heldout", type=int, default=None, metavar="N",
                   help="held-out questions (default: max(40, n / 10))")
    y.add_argument("--image-size", type=int, default=64, help="shapes: the square canvas side")
    y.add_argument("--task", default="shapes", choices=("shapes", "detail"),
                   help="detail: one small shape in a wide image (needs AnyRes tiling to be seen)")
    y.add_argument("--width", type=int, default=96, help="detail: canvas width")
    y.add_argument("--height", type=int, default=32, help="detail: canvas height")
    y.add_argument("--prefer", type=int, default=0, metavar="N",
                   help="shapes: also write N preference pairs (prefer.json, + prefer_heldout.json) for stage prefer")
    y.add_argument("--rl", type=int, default=0, metavar="N",
                   help="shapes: also write N questions with exact answers (rl.json, + rl_heldout.json) for stage rl")
    y.set_defaults(func=_synth)

    p = sub.add_parser("preprocess-images", help="write every image padded to square and resized for the vision "
                       "tower (same relative paths; point data.image_root at OUT)")
    p.add_argument("data", help="records file")
    p.add_argument("out", help="output image root")
    p.add_argument("--vision", default="tiny-clip", help="vision preset, directory or hub id (its image processor)")
    p.add_argument("--image-root", help="directory image paths are relative to (default: the data file's)")
    p.add_argument("--aspect", default="pad", choices=["pad", "resize"])
    p.add_argument("--workers", type=int, default=4)
    p.set_defaults(func=_preprocess_images)


def _validate(args) -> int:
    from pathlib import Path

    from vistune.data_prep.doctor import diagnose
    from vistune.data_prep.records.convert import write_records

    if args.fix and Path(args.data).is_dir() and any(Path(args.data).glob("*.tar")):
        print(f"error: --fix rewrites a records file; {args.data} holds shards (fix the source, then shard again)")
        return 2

    report = diagnose(args.data, image_root=args.image_root, model=args.model, template=args.template,
                      max_length=args.max_length, fmt=args.format, workers=args.workers, arch=args.arch,
                      keep_records=bool(args.fix), progress=True, rl=args.rl)
    print(report.format())
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(first=50), f, indent=1)
        print(f"report: {args.report}")
    if args.fix:
        from vistune.data_prep.batching.preference import is_preference_data
        from vistune.data_prep.batching.rl_prompts import is_question_data

        if is_preference_data(args.data, args.format) or args.rl or is_question_data(args.data, args.format):
            print("error: --fix writes conversation records; for preference pairs and rl prompts, drop the ids "
                  "listed above", file=sys.stderr)
            return 2
        print(f"fixed: {write_records(report.good, args.fix, 'llava')} ({len(report.good)} records)")
    return 0 if report.ok else 1


def _shard(args) -> int:
    from vistune.data_prep.store.shards import write_shards

    report = write_shards(args.data, args.out, image_root=args.image_root, per_shard=args.per_shard,
                          vision=args.vision, aspect=args.aspect, fmt=args.format)
    print(report.format())
    return 0 if report.samples else 1


def _stats(args) -> int:
    from vistune.data_prep.doctor.stats import dataset_stats

    print(dataset_stats(args.data, args.format).format())
    return 0


def _convert(args) -> int:
    from vistune.data_prep import SkipLog, load_records
    from vistune.data_prep.records.convert import write_records

    skips = SkipLog()
    records = load_records(args.data, fmt=args.format, skips=skips)
    print(f"wrote {write_records(records, args.out, args.to)}: {len(records)} records")
    print(skips.summary())
    return 0


def _synth(args) -> int:
    from vistune.data_prep import synthesize

    if args.task == "detail":
        from vistune.data_prep.synth.detail import synthesize_detail

        paths = synthesize_detail(args.out, n=args.n, seed=args.seed, n_heldout=args.heldout, width=args.width,
                                  height=args.height)
    else:
        paths = synthesize(args.out, n=args.n, seed=args.seed, n_heldout=args.heldout, image_size=args.image_size)
    if args.prefer:
        from vistune.data_prep.synth import synthesize_preferences

        paths.update(synthesize_preferences(args.out, n=args.prefer, seed=args.seed + 1,
                                            n_heldout=max(40, args.prefer // 3), image_size=args.image_size))
    if args.rl:
        from vistune.data_prep.synth.rl import synthesize_rl

        paths.update(synthesize_rl(args.out, n=args.rl, seed=args.seed + 2, n_heldout=max(40, args.rl // 2),
                                   image_size=args.image_size))
    for name, path in paths.items():
        print(f"{name:14s} {path}")
    return 0


def _preprocess_images(args) -> int:
    from vistune.data_prep.images.preprocess import preprocess_images

    report = preprocess_images(args.data, args.out, args.vision, image_root=args.image_root, aspect=args.aspect,
                               workers=args.workers)
    print(report.format())
    return 1 if report.failed else 0
