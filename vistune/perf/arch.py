"""Architecture numbers of a LLaVA model (widths, depths, vocabulary, image tokens) and the parameter counts they imply.

The planner and the FLOP model need only these numbers, not weights: they come from a small table of known
parts (so `vistune plan` works for a 13B model on a laptop with no hub access) or from a local config.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LLMArch:
    """A Llama-family decoder (RMSNorm, rotary positions, SwiGLU MLP, optional grouped-query attention)."""

    hidden: int  # model width d
    layers: int  # decoder layers
    intermediate: int  # SwiGLU width f
    heads: int  # query heads
    kv_heads: int  # key/value heads (== heads without GQA)
    vocab: int  # vocabulary (embedding rows and lm_head outputs)
    tied_embeddings: bool = False  # lm_head shares the embedding matrix

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer in one decoder layer, by leaf name."""
        d, f, kv = self.hidden, self.intermediate, self.kv_width
        return {
            "q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
            "gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d),
        }

    @property
    def layer_linear_params(self) -> int:
        return sum(i * o for i, o in self.linear_shapes().values())

    @property
    def layer_params(self) -> int:
        return self.layer_linear_params + 2 * self.hidden  # + two RMSNorm weights

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        return self.vocab * self.hidden  # a matmul even when tied (its FLOPs count either way)

    @property
    def params(self) -> int:
        """Stored parameters (a tied lm_head is stored once)."""
        head = 0 if self.tied_embeddings else self.lm_head_params
        return self.layers * self.layer_params + self.embedding_params + head + self.hidden

    @property
    def matmul_params(self) -> int:
        """Weights that take part in a matmul per token: every decoder linear + lm_head (not the lookup)."""
        return self.layers * self.layer_linear_params + self.lm_head_params

    def lora_params(self, r: int, targets: list[str] | None = None) -> int:
        """LoRA A and B parameters for rank `r` on `targets` (None = every decoder linear) in all layers."""
        shapes = self.linear_shapes()
        chosen = targets or list(shapes)
        return self.layers * sum(r * (shapes[t][0] + shapes[t][1]) for t in chosen if t in shapes)


@dataclass(frozen=True)
class VisionArch:
    """A ViT vision tower (CLIP / SigLIP): pre-norm blocks with a GELU MLP."""

    hidden: int
    layers: int
    intermediate: int
    image_size: int
    patch_size: int
    cls_token: bool = True  # CLIP has one (LLaVA drops it from the features); SigLIP has none

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def tokens(self) -> int:
        """Tokens the tower runs on per image (patches + CLS)."""
        return self.patches + int(self.cls_token)

    @property
    def layer_params(self) -> int:
        d, f = self.hidden, self.intermediate
        return 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d  # q/k/v/o, fc1/fc2 (with biases), two LayerNorms

    @property
    def matmul_params(self) -> int:
        d = self.hidden
        return self.layers * (4 * d * d + 2 * d * self.intermediate)

    @property
    def params(self) -> int:
        d = self.hidden
        patch_embed = 3 * self.patch_size**2 * d
        extra = d + 4 * d if self.cls_token else d + 2 * d  # CLIP: class embedding, pre/post LayerNorm
        return self.layers * self.layer_params + patch_embed + self.tokens * d + extra


@dataclass(frozen=True)
class LlavaArch:
    """Vision tower -> 2-layer MLP projector (vision width -> d -> d) -> LLM."""

    vision: VisionArch
    llm: LLMArch
    anyres_tokens: int | None = None  # AnyRes (LLaVA-NeXT / OneVision): LLM tokens per image of the planned size
    tower_passes: int = 1  # tower inputs per image: 1, or AnyRes crops + the base image

    @property
    def image_tokens(self) -> int:
        """Image tokens per image placed in the LLM sequence (LLaVA: patches only, CLS dropped; AnyRes: the grid
        after unpadding, row newlines and the base image)."""
        return self.anyres_tokens if self.anyres_tokens is not None else self.vision.patches

    @property
    def projected_tokens(self) -> int:
        """Patch features the projector maps per image (every tower input's patches)."""
        return self.tower_passes * self.vision.patches

    @property
    def projector_params(self) -> int:
        v, d = self.vision.hidden, self.llm.hidden
        return v * d + d + d * d + d


# Published architecture numbers (from each model's config.json on the hub).
KNOWN_LLMS: dict[str, LLMArch] = {
    "vicuna-7b-v1.5": LLMArch(4096, 32, 11008, 32, 32, 32000),
    "vicuna-13b-v1.5": LLMArch(5120, 40, 13824, 40, 40, 32000),
    "llama-3-8b-instruct": LLMArch(4096, 32, 14336, 32, 8, 128256),
    "qwen2-7b-instruct": LLMArch(3584, 28, 18944, 28, 4, 152064),
    "mistral-7b-instruct": LLMArch(4096, 32, 14336, 32, 8, 32000),
    "smollm2-135m": LLMArch(576, 30, 1536, 9, 3, 49152, tied_embeddings=True),
}
KNOWN_VISION: dict[str, VisionArch] = {
    "clip-vit-large-patch14-336": VisionArch(1024, 24, 4096, 336, 14),
    "clip-vit-large-patch14": VisionArch(1024, 24, 4096, 224, 14),
    "siglip-so400m-patch14-384": VisionArch(1152, 27, 4304, 384, 14, cls_token=False),
}


def llm_arch_from_config(config) -> LLMArch:
    """LLMArch from a transformers text config (object or dict)."""
    get = config.get if isinstance(config, dict) else lambda k, default=None: getattr(config, k, default)
    heads = get("num_attention_heads")
    return LLMArch(
        hidden=get("hidden_size"),
        layers=get("num_hidden_layers"),
        intermediate=get("intermediate_size"),
        heads=heads,
        kv_heads=get("num_key_value_heads") or heads,
        vocab=get("vocab_size"),
        tied_embeddings=bool(get("tie_word_embeddings", False)),
    )


def vision_arch_from_config(config) -> VisionArch:
    """VisionArch from a transformers CLIP / SigLIP vision config (object or dict; a dual config is unwrapped)."""
    if isinstance(config, dict):
        config = config.get("vision_config", config)
        get = config.get
    else:
        config = getattr(config, "vision_config", config)
        get = lambda k, default=None: getattr(config, k, default)  # noqa: E731
    model_type = str(get("model_type", "clip"))
    return VisionArch(
        hidden=get("hidden_size"),
        layers=get("num_hidden_layers"),
        intermediate=get("intermediate_size"),
        image_size=get("image_size"),
        patch_size=get("patch_size"),
        cls_token=not model_type.startswith("siglip"),
    )


def llava_arch_from_config(config) -> LlavaArch:
    """LlavaArch from a composed model's `LlavaConfig` (what the benchmark has in hand)."""
    return LlavaArch(vision_arch_from_config(config.vision_config), llm_arch_from_config(config.text_config))


def _local_config(name_or_path: str) -> dict | None:
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return json.loads(path.read_text())
    if (path / "config.json").is_file():
        return json.loads((path / "config.json").read_text())
    return None


def resolve_llm_arch(name_or_path: str) -> LLMArch:
    """Known name (or a hub id ending in one), else a local checkpoint directory's config.json."""
    return _resolve(name_or_path, KNOWN_LLMS, llm_arch_from_config, "LLM", _tiny_part(name_or_path, 1))


def resolve_vision_arch(name_or_path: str) -> VisionArch:
    return _resolve(name_or_path, KNOWN_VISION, vision_arch_from_config, "vision tower", _tiny_part(name_or_path, 0))


def _tiny_part(name: str, index: int) -> str | None:
    """The tiny presets are built locally; their architecture is read from the built checkpoint."""
    from vistune.model import LLM_PRESETS, VISION_PRESETS

    table = VISION_PRESETS if index == 0 else LLM_PRESETS
    preset = table.get(name)
    if preset is None or preset.source != "tiny":
        return None
    from vistune.model import ensure_tiny_parts

    return str(ensure_tiny_parts()[index])


def _resolve(name: str, table: dict, from_config, what: str, local: str | None):
    from vistune.model import LLM_PRESETS, VISION_PRESETS

    by_source = {p.source: n for n, p in {**VISION_PRESETS, **LLM_PRESETS}.items()}
    name = by_source.get(name, name)  # a hub id of a preset -> the preset's name
    key = name.rstrip("/").rsplit("/", 1)[-1].lower()
    if name in table:
        return table[name]
    for known, arch in table.items():
        if key == known or key.startswith(known):
            return arch
    config = _local_config(local or name)
    if config is not None:
        return from_config(config.get("text_config", config) if what == "LLM" else config)
    known = ", ".join(sorted(table))
    raise ValueError(
        f"unknown {what} {name!r}: give a local checkpoint directory (its config.json is read) or one of: {known}"
    )


def resolve_llava_arch(vision: str, llm: str) -> LlavaArch:
    return LlavaArch(resolve_vision_arch(vision), resolve_llm_arch(llm))
