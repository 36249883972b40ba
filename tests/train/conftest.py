"""Training-room fixtures: a small synthetic shapes dataset, tiny recipes pointed at it, one-thread torch.

The tiny models are so small that thread start-up dominates; one thread per process also keeps runs
deterministic and fast on a shared 2-core CI box.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny"


@pytest.fixture(scope="session")
def shapes(tmp_path_factory, tiny_parts):
    """Synthetic shapes data; `small.json` holds 8 fixed instruct records (images and one text-only)."""
    from vistune.data_prep import synthesize

    root = tmp_path_factory.mktemp("shapes")
    paths = synthesize(root, n=24, seed=0)
    records = json.loads(paths["instruct"].read_text())
    text_only = [r for r in records if "image" not in r][:1]
    small = [r for r in records if "image" in r][:7] + text_only
    (root / "small.json").write_text(json.dumps(small))
    small_align = json.loads(paths["align"].read_text())[:8]
    (root / "small_align.json").write_text(json.dumps(small_align))
    return root


@pytest.fixture(scope="session")
def instruct_run(shapes, tmp_path_factory) -> Path:
    """A short stage-2 LoRA run (2 steps), the start of the prefer and rl stages' tests (they only read it)."""
    from vistune.train.run.config import load_config
    from vistune.train.stages.engine import train

    out = tmp_path_factory.mktemp("instruct")
    train(load_config(TINY / "instruct_lora.yaml", tiny_overrides(
        shapes, out, **{"model.projector": "null", "optim.max_steps": 2, "save_steps": 0})))
    return out


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def export_logits(exported: Path, mode: str, batch: dict, tmp_path: Path):
    """Logits of the export (merged or base+lora) on `batch`, loaded in a fresh process by plain transformers / PEFT
    (load_exported.py): no vistune code in the model."""
    import subprocess
    import sys

    import torch

    torch.save(batch, tmp_path / "batch.pt")
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("load_exported.py")), str(exported), mode,
                           str(tmp_path / "batch.pt"), str(tmp_path / "logits.pt")], env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
    return torch.load(tmp_path / "logits.pt")


def assert_export_logits(exported: Path, mode: str, batch: dict, expected, tmp_path: Path, atol: float) -> None:
    """The export, loaded in a fresh process by plain transformers / PEFT, gives `expected` logits on `batch`."""
    import torch

    torch.testing.assert_close(export_logits(exported, mode, batch, tmp_path), expected, rtol=0, atol=atol)


def tiny_overrides(shapes: Path, out: Path, data: str = "small.json", **extra) -> list[str]:
    items = {"data.path": str(shapes / data), "data.image_root": str(shapes), "output_dir": str(out), **extra}
    return [f"{k}={v}" for k, v in items.items()]
