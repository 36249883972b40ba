"""`vistune env`: what this machine offers a training run (versions, devices, bf16 / tf32, attention, 4-bit)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("env", help="versions, devices, bf16/tf32, flash-attention and bitsandbytes support")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_env)


def _env(args) -> int:
    from vistune.train.preflight import environment_report

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
    print(f"bitsandbytes  {report['bitsandbytes_backend'] or 'no usable backend'}")
    return 0
