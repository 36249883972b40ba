"""`vistune train CONFIG [key=value ...] [--dry-run]`, `vistune export --run DIR --out DIR` and `vistune env`."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="run a training stage (align / instruct / prefer) from a YAML recipe")
    train.add_argument("config", help="YAML recipe, e.g. configs/llava-1.5-7b/finetune_lora.yaml")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=1e-4")
    train.add_argument("--dry-run", action="store_true", help="print the resolved config and planned parameters, load nothing")
    # launchers (deepspeed, older torch.distributed) append --local_rank; the rank comes from the environment
    train.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    train.set_defaults(func=_train)

    export = subparsers.add_parser("export", help="export a run or checkpoint as a standard HF Llava directory")
    export.add_argument("--run", required=True, help="run output dir or checkpoint dir")
    export.add_argument("--out", required=True, help="output directory (must not exist or be empty)")
    export.add_argument("--mode", choices=("merged", "base+lora"), default="merged",
                        help="merged: LoRA folded into the LLM; base+lora: base with the projector + adapter/ (vLLM --enable-lora)")
    export.add_argument("--dtype", default="bfloat16", help="weight dtype of the exported model")
    export.set_defaults(func=_export)
    _register_env(subparsers)


def _train(args) -> int:
    from vistune.train.run.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        from vistune.train.run.dry_run import plan

        print(plan(config))
        return 0
    from vistune.model.compose import PickleWeightsRefused
    from vistune.train.run.preflight import PreflightError
    from vistune.train.stages.engine import TrainingStopped, train

    try:
        result = train(config)
    except (PreflightError, PickleWeightsRefused) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingStopped as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0 if result.status == "done" else 3


def _export(args) -> int:
    from vistune.train.saving.export import export

    out = export(args.run, args.out, mode=args.mode, dtype=args.dtype)
    print(f"exported {args.run} -> {out} ({args.mode})")
    return 0


def _register_env(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("env", help="versions, devices, bf16/tf32, flash-attention and bitsandbytes support")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_env)


def _env(args) -> int:
    from vistune.train.run.preflight import environment_report

    report = environment_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"python        {report['python']}")
    for name, version in report["packages"].items():
        print(f"{name:13s} {version or 'not installed'}")
    for device in report["devices"]:
        print(f"device        {device}")
    ratio = report["cpu_bf16_speed_ratio"]
    extra = f" (bf16 matmul at {ratio:.3f}x fp32 speed)" if ratio is not None else ""
    print(f"bf16          {'yes' if report['bf16'] else 'no'}{extra}")
    print(f"tf32          {'yes' if report['tf32'] else 'no'}")
    print(f"attention     {report['attention']} (flash-attn installed: {report['flash_attn_installed']})")
    print(f"liger-kernel  {'installed' if report['liger_kernel_installed'] else 'not installed'} (GPU only: pip install 'vistune[liger]')")
    print(f"bitsandbytes  {report['bitsandbytes_backend'] or 'no usable backend'}")
    return 0
