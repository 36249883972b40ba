"""Shared fixtures: tiny model parts built once per test session, in a temporary cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Launchers and scripts (deepspeed, accelerate, python, vistune) resolve to this interpreter's environment,
# also when the suite runs as `.venv/bin/python -m pytest` without an activated venv.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test process: tiny models are dominated by thread start-up, and a shared
    2-core CI box stays fast and deterministic."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session", autouse=True)
def _vistune_cache(tmp_path_factory):
    """Every preset built by a test lands in one temporary cache (shared by subprocesses via the env)."""
    cache = tmp_path_factory.mktemp("vistune-cache")
    old = os.environ.get("VISTUNE_CACHE")
    os.environ["VISTUNE_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("VISTUNE_CACHE", None)
    else:
        os.environ["VISTUNE_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_parts(_vistune_cache):
    """(vision_dir, llm_dir): a tiny CLIP vision checkpoint and a tiny Llama + tokenizer, saved to disk."""
    from vistune.model import ensure_tiny_parts

    return ensure_tiny_parts()


@pytest.fixture()
def tiny_llava(tiny_parts):
    """A freshly composed tiny (model, processor) in fp32."""
    from vistune.model import build_llava

    vision, llm = tiny_parts
    return build_llava(str(vision), str(llm))
