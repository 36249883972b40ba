"""`vistune plan CONFIG --gpus N --gpu NAME [--nodes M]`: memory per GPU, fit and hours, before renting anything."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from vistune.perf.gpus import GPUS

    p = subparsers.add_parser("plan", help="estimate per-GPU memory, fit and hours per epoch for a recipe")
    p.add_argument("config", help="YAML recipe, e.g. configs/llava-1.5-7b/finetune_lora.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides, as for vistune train")
    p.add_argument("--gpu", required=True, help=f"GPU kind: {', '.join(GPUS)}")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per node (default 1)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (default 1)")
    p.add_argument("--micro-batch", type=int, default=None, help="per-GPU micro-batch (default: the recipe's)")
    p.add_argument("--grad-accum", type=int, default=None, help="gradient accumulation (default: the recipe's)")
    p.add_argument("--samples", type=int, default=None, help="training samples (default: the dataset's)")
    p.add_argument("--mfu", type=float, default=None,
                   help="MFU measured for this configuration (e.g. by vistune bench) instead of the default")
    p.set_defaults(func=_plan)


def _plan(args) -> int:
    import dataclasses

    from vistune.perf.gpus import get_gpu
    from vistune.plan.planner import plan, plan_input_from_config
    from vistune.plan.report import format_plan
    from vistune.train.run.config import ConfigError, load_config

    try:
        config = load_config(args.config, args.overrides)
        inp = plan_input_from_config(config, get_gpu(args.gpu), args.gpus, args.nodes, micro_batch=args.micro_batch,
                                     grad_accum=args.grad_accum, mfu=args.mfu)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.samples:
        inp = inp.replace(data=dataclasses.replace(inp.data, samples=args.samples))
    print(format_plan(plan(inp)))
    if config.stage == "rl":
        from vistune.plan.rollouts import rollout_cost

        print(rollout_cost(config, args.gpus * args.nodes).line())
    return 0
