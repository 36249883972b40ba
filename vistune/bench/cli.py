"""`vistune bench CONFIG`: throughput, padding, dataloader wait, memory and MFU of a recipe; variants interleaved."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="measure training throughput and MFU; compare variants interleaved")
    p.add_argument("config", help="a training recipe (YAML)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides for every variant, as for vistune train")
    p.add_argument("--compare", action="append", default=[], metavar="KEY=A,B",
                   help="a config key and the values to compare (repeatable: the product is run); "
                        "settings=llava,vistune compares named sets: vistune (the defaults), llava (LLaVA's "
                        "trainer settings), padded-sdpa, flash, liger, no-liger, liger-ce, compile")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_overrides",
                   help="same as a key=value argument (repeatable)")
    p.add_argument("--steps", type=int, default=8, help="measured optimizer steps per run")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured steps first (worker start, allocator)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (A B A B ...)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the peak and the runs (default: torch's)")
    p.add_argument("--out", help="write the full result as JSON here")
    p.set_defaults(func=_bench)


def _bench(args) -> int:
    from vistune.bench.report import format_table
    from vistune.bench.runner import bench
    from vistune.train.run.config import ConfigError

    try:
        result = bench(args.config, args.compare, [*args.overrides, *args.set_overrides], steps=args.steps, warmup=args.warmup,
                       rounds=args.rounds, threads=args.threads)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}")
        return 2
    print(format_table(result))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=1)
        print(f"json: {args.out}")
    return 0
