"""`vistune model ...`: inspect presets and compose a LLaVA model from parts."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="list presets; compose a LLaVA model from a vision + an LLM checkpoint")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    presets = sub.add_parser("presets", help="list the vision, LLM and model presets")
    presets.set_defaults(func=_presets)

    compose = sub.add_parser("compose", help="compose and save a LLaVA model (fresh projector)")
    compose.add_argument("--vision", default="tiny-clip", help="vision preset, directory or hub id")
    compose.add_argument("--llm", default="tiny-llama", help="LLM preset, directory, hub id or .gguf file")
    compose.add_argument("--projector", help="a stage-1 projector.safetensors to load")
    compose.add_argument("--chat-template", metavar="FILE",
                         help="a Jinja chat template for the processor (default: the LLM tokenizer's own)")
    compose.add_argument("--dtype", default="float32")
    compose.add_argument("--out", required=True, help="output directory (standard HF Llava layout)")
    compose.set_defaults(func=_compose)


def _presets(args) -> int:
    from vistune.model import LLM_PRESETS, MODEL_PRESETS, VISION_PRESETS

    print("vision presets:")
    for name, p in VISION_PRESETS.items():
        print(f"  {name:28s} {p.source:38s} {p.note}")
    print("LLM presets:")
    for name, p in LLM_PRESETS.items():
        print(f"  {name:28s} {p.source:38s} template={p.template}  {p.note}")
    print("model presets (vision + llm):")
    for name, (v, llm) in MODEL_PRESETS.items():
        print(f"  {name:28s} {v} + {llm}")
    return 0


def _compose(args) -> int:
    from pathlib import Path

    from vistune.model import build_llava, count_parameters, format_parameter_table, load_projector

    chat_template = Path(args.chat_template).read_text() if args.chat_template else None
    model, processor = build_llava(args.vision, args.llm, dtype=args.dtype, chat_template=chat_template)
    if args.projector:
        load_projector(model, args.projector)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    print(format_parameter_table(count_parameters(model)))
    print(f"saved {args.out}")
    return 0
