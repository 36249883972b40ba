"""`vistune model ...`: inspect presets and compose a LLaVA model from parts."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model", help="list presets; compose a LLaVA model from parts; import LLaVA's own checkpoints (import-llava)"
    )
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

    imp = sub.add_parser("import-llava", help="convert LLaVA's own checkpoint / LoRA output / mm_projector.bin to HF")
    imp.add_argument("src", help="a LLaVA checkpoint dir (LlavaLlamaForCausalLM / LlavaMistralForCausalLM), a LLaVA "
                     "LoRA output dir (with --base), or a stage-1 mm_projector.bin (or its dir)")
    imp.add_argument("out", help="output: an HF Llava directory (a projector.safetensors dir for mm_projector.bin)")
    imp.add_argument("--vision", help="local CLIP directory for the tower named by mm_vision_tower (needed offline)")
    imp.add_argument("--base", help="the LLM a LoRA output dir was trained on (e.g. a vicuna-7b-v1.5 dir)")
    imp.add_argument("--dtype", help="weight dtype of the output (default: the checkpoint's torch_dtype)")
    imp.add_argument("--allow-pickle", action="store_true",
                     help="read pickle .bin weights (LLaVA's releases are .bin; read with torch.load weights_only)")
    imp.set_defaults(func=_import_llava)


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


def _import_llava(args) -> int:
    from pathlib import Path

    from vistune.model.checkpoints.llava_format import import_llava, import_projector

    src, out = Path(args.src), Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    if src.suffix == ".bin" or _projector_only(src):
        mapping = import_projector(src, out, allow_pickle=args.allow_pickle)
    else:
        mapping = import_llava(src, out, vision=args.vision, base=args.base, dtype=args.dtype,
                               allow_pickle=args.allow_pickle)
    print(f"{len(mapping.lines)} source tensors mapped:")
    for line in mapping.summary():
        print(f"  {line}")
    print(f"saved {out}")
    return 0


def _projector_only(src) -> bool:
    """A stage-1 output dir: mm_projector.bin beside a config.json, and no model weights."""
    return (src / "mm_projector.bin").is_file() and not any(src.glob("pytorch_model*")) and not any(
        src.glob("model*.safetensors")) and not (src / "adapter_config.json").is_file()
