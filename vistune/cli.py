"""The `vistune` command: a thin layer that parses arguments and calls one library function per command.

Each room owns its commands in its own `cli.py` with a `register(subparsers)` function; this file only
lists the rooms, so adding a command never touches another room's code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from vistune import __version__

# Modules that define `register(subparsers)`, in the order their commands appear in `vistune --help`.
COMMAND_MODULES = [
    "vistune.quickstart.cli",
    "vistune.model.cli",
    "vistune.data_prep.cli",
    "vistune.train.cli",
    "vistune.plan.cli",
    "vistune.bench.cli",
    "vistune.eval.cli",
    "vistune.serve.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vistune",
        description="LLaVA-style visual instruction tuning: compose, align, instruct, evaluate, export.",
    )
    parser.add_argument("--version", action="version", version=f"vistune {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # The deepspeed launcher puts --local_rank before the subcommand; the rank is read from the environment.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        result = args.func(args)
    except Exception as err:
        if not _is_user_error(err) or args.verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Like `parse_args`, but `key=value` overrides may stand anywhere on the line, also after options.

    argparse fills a `nargs="*"` positional only from its first run of arguments; later `key=value` words come
    back unrecognised, and join `args.overrides` of commands that take overrides. Words after `--` go, as given,
    to `args.passthrough` of commands that define it (default None), and are an error for other commands.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:  # words after `--` belong to a program the command starts (`vistune serve ... -- VLLM ARGS`)
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    args, extra = parser.parse_known_args(argv)
    if passthrough and not hasattr(args, "passthrough"):
        parser.error(f"this command takes no arguments after --: {' '.join(passthrough)}")
    if hasattr(args, "passthrough"):
        args.passthrough = passthrough
    overrides = [word for word in extra if "=" in word and not word.startswith("-")]
    if overrides and isinstance(getattr(args, "overrides", None), list):
        args.overrides.extend(overrides)
        extra = [word for word in extra if word not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _is_user_error(err: Exception) -> bool:
    """Errors about the user's inputs (a config, a data file, a checkpoint): a message, not a traceback."""
    from vistune.data_prep import DataFileError
    from vistune.model.checkpoints.base import BaseError
    from vistune.model.checkpoints.manifest import ManifestError
    from vistune.model.checkpoints.weight_files import WeightFileError
    from vistune.serve import ServeError
    from vistune.train.run.config import ConfigError

    return isinstance(err, (ManifestError, DataFileError, ConfigError, BaseError, WeightFileError, ServeError,
                            FileNotFoundError, FileExistsError))


if __name__ == "__main__":
    sys.exit(main())
