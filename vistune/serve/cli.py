"""`vistune serve EXPORT [--lora NAME=DIR ...] [--port N] [-- extra vllm serve args]`: vLLM's server for an export."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve an export with vLLM's OpenAI-compatible server (`vllm serve` with the export's flags)",
        description="Starts `vllm serve` on an export with its chat template, dtype, image limit and LoRA flags; "
                    "arguments after `--` go to vllm serve as given and win over vistune's.")
    parser.add_argument("export", help="a `vistune export` directory (merged or base+lora)")
    parser.add_argument("--lora", action="append", default=[], metavar="NAME=DIR",
                        help="serve a LoRA adapter under NAME (repeatable); default: a base+lora export's adapter/")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: reachable from elsewhere)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dry-run", action="store_true", help="print the vllm serve command and exit")
    parser.set_defaults(func=_serve, passthrough=None)  # after --: extra `vllm serve` arguments


def _serve(args: argparse.Namespace) -> int:
    from vistune.serve import ServeError, ServeSpec, curl_line, vllm_args, vllm_launcher

    loras = {}
    for item in args.lora:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ServeError(f"--lora {item!r}: write NAME=DIR, e.g. --lora shapes=export/adapter")
        loras[name] = Path(path)
    spec = ServeSpec(export=Path(args.export), loras=loras, host=args.host, port=args.port, extra=args.passthrough or [])
    flags = vllm_args(spec)
    argv = ["vllm", "serve", str(spec.export)] if args.dry_run else vllm_launcher(spec.export)
    print(shlex.join(argv + flags))
    print("once it says 'Application startup complete', ask it about an image:")
    print(curl_line(spec), flush=True)
    if args.dry_run:
        return 0
    os.execv(argv[0], argv + flags)  # vLLM's own server replaces this process: signals reach it directly
    return 1  # not reached

