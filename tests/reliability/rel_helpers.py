"""Helpers for the reliability tests: tiny-recipe overrides, a config, a subprocess environment, log.jsonl."""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LORA = REPO / "configs" / "tiny" / "instruct_lora.yaml"


def overrides(data: Path, image_root: Path, out: Path, **extra) -> list[str]:
    """`key=value` overrides of the tiny LoRA recipe: no stage-1 projector, checkpoints off unless asked."""
    items = {"data.path": data, "data.image_root": image_root, "output_dir": out, "model.projector": "null",
             "save_steps": 0, **extra}
    return [f"{k}={v}" for k, v in items.items()]


def tiny_config(data: Path, image_root: Path, out: Path, **extra):
    from vistune.train.run.config import load_config

    return load_config(LORA, overrides(data, image_root, out, **extra))


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def stop_after(step: int):
    """A TrainerCallback that ends training after optimizer step `step` (its save, if due, still happens)."""
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                control.should_training_stop = True

    return StopAfter()


def log_steps(out: Path) -> list[dict]:
    path = Path(out) / "log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


# -- "nothing is read from outside the image root" ---------------------------------------------------------------

_WATCH: dict = {}  # {"dirs": (resolved dir, ...), "fd": log file descriptor}; the hook is installed once


def _audit(event: str, args) -> None:
    if event != "open" or not _WATCH or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.fsdecode(args[0])
    real = os.path.realpath(path)
    if any(real == d or real.startswith(d + os.sep) for d in _WATCH["dirs"]):
        os.write(_WATCH["fd"], (real + "\n").encode())  # O_APPEND: DataLoader workers (forked) report here too


class ReadWatch:
    """Records every file opened under `dirs` by this process and its forked children (an audit hook)."""

    installed = False

    def __init__(self, dirs, log: Path):
        self.dirs = tuple(os.path.realpath(d) for d in dirs)
        self.log = Path(log)

    def __enter__(self) -> ReadWatch:
        import sys

        if not ReadWatch.installed:
            sys.addaudithook(_audit)
            ReadWatch.installed = True
        _WATCH.update(dirs=self.dirs, fd=os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
        return self

    def __exit__(self, *exc) -> None:
        os.close(_WATCH.pop("fd"))
        _WATCH.clear()

    def reads(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.is_file() else []
