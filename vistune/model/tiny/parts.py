"""Tiny model parts built from configs in seconds, with no downloads.

Tests and the quickstart compose LLaVA from these exactly as users compose it from real checkpoints:
a CLIP vision checkpoint directory and a causal-LM directory (weights + tokenizer) saved to disk.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# Words the tiny tokenizer should hold as whole tokens: chat-template scaffolding, the synthetic
# shapes vocabulary and common English. Anything else still encodes (byte-level BPE never fails).
_CORPUS_LINES = [
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions.",
    " USER: ASSISTANT: USER: ASSISTANT: system user assistant <|im_start|> <|im_end|>",
    "What is the colour of the shape? What color is the shape? What shape is in the image?",
    "How many shapes are there? Where is the shape? Is there a circle? Answer the question using a single word "
    "or phrase.",
    "red green blue yellow purple orange white black gray pink brown cyan magenta",
    "circle square triangle star diamond rectangle cross ellipse hexagon shape shapes object objects",
    "left right top bottom center middle upper lower corner above below next to beside near far",
    "zero one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9 10",
    "yes no Yes No the a an of in on at to is are there this that with and or it image picture photo",
    "Describe the image briefly. A red circle on the left. Two blue squares at the top. "
    "The image shows a green triangle in the center of a white canvas.",
    "Sure, here is a description of the picture. The answer is A. (A) (B) (C) (D) Options:",
]


_RECIPE_VERSION = 2  # bump when the tokenizer or the parts' construction changes


@dataclass
class TinySpec:
    """Sizes of the tiny parts; the defaults build in about a second on a laptop CPU."""

    image_size: int = 32  # vision input resolution (pixels, square)
    patch_size: int = 8  # ViT patch size: (image_size / patch_size)^2 image tokens
    vision_hidden: int = 64  # CLIP vision width
    vision_layers: int = 3  # >= 2 so that vision_feature_layer -2 is a real intermediate layer
    llm_hidden: int = 64  # Llama width
    llm_layers: int = 2
    llm_heads: int = 4
    llm_kv_heads: int = 2  # grouped-query attention, as in Llama-3 / SmolLM2
    llm_intermediate: int = 176
    vocab_size: int = 512  # BPE target size (the trained vocabulary may be a little smaller)
    max_positions: int = 1024
    seed: int = 0

    def key(self) -> str:
        """Cache key: the sizes plus the build recipe's version, so a changed recipe never reuses old parts."""
        blob = json.dumps({**asdict(self), "recipe": _RECIPE_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


def train_tiny_tokenizer(spec: TinySpec, extra_text: list[str] | None = None):
    """Trains a byte-level BPE tokenizer with Llama-style specials (<s>, </s>, <unk>; no pad token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=["<s>", "</s>", "<unk>"],  # eos != 2: CLIP text pooling treats id 2 as legacy
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = _CORPUS_LINES * 4 + list(extra_text or [])
    tok.train_from_iterator(corpus, trainer)
    bos_id = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=spec.max_positions,
        clean_up_tokenization_spaces=False,
    )


def tiny_vision_config(spec: TinySpec):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=spec.vision_hidden,
        intermediate_size=spec.vision_hidden * 2,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=4,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        projection_dim=spec.vision_hidden,
    )


def tiny_image_processor(spec: TinySpec):
    from transformers import CLIPImageProcessorPil

    side = spec.image_size
    return CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})


def tiny_llm_config(spec: TinySpec, vocab_size: int, tokenizer=None):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.llm_hidden,
        intermediate_size=spec.llm_intermediate,
        num_hidden_layers=spec.llm_layers,
        num_attention_heads=spec.llm_heads,
        num_key_value_heads=spec.llm_kv_heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id if tokenizer else 1,
        eos_token_id=tokenizer.eos_token_id if tokenizer else 2,
        tie_word_embeddings=False,
    )


def save_tiny_vision(out_dir: str | Path, spec: TinySpec | None = None) -> Path:
    """Writes a randomly initialised CLIP vision checkpoint + image processor, as from the hub."""
    from transformers import CLIPVisionModel

    spec = spec or TinySpec()
    out = Path(out_dir)
    torch.manual_seed(spec.seed)
    CLIPVisionModel(tiny_vision_config(spec)).save_pretrained(out)
    tiny_image_processor(spec).save_pretrained(out)
    return out


def save_tiny_llm(out_dir: str | Path, spec: TinySpec | None = None, extra_text: list[str] | None = None) -> Path:
    """Writes a randomly initialised Llama causal LM + its locally trained tokenizer."""
    from transformers import GenerationConfig, LlamaForCausalLM

    spec = spec or TinySpec()
    out = Path(out_dir)
    tokenizer = train_tiny_tokenizer(spec, extra_text)
    torch.manual_seed(spec.seed + 1)
    model = LlamaForCausalLM(tiny_llm_config(spec, len(tokenizer), tokenizer))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny_cache_dir() -> Path:
    return Path(os.environ.get("VISTUNE_CACHE", Path.home() / ".cache" / "vistune"))


def ensure_tiny_parts(spec: TinySpec | None = None, root: str | Path | None = None) -> tuple[Path, Path]:
    """Builds (once) and returns the tiny (vision_dir, llm_dir); keyed by the spec so sizes never mix."""
    spec = spec or TinySpec()
    base = Path(root) if root else tiny_cache_dir() / f"tiny-{spec.key()}"
    vision, llm = base / "vision", base / "llm"
    for path, build in ((vision, save_tiny_vision), (llm, save_tiny_llm)):
        if not (path / "config.json").exists():
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            build(tmp, spec)
            try:
                os.replace(tmp, path)
            except OSError:  # another process finished first: keep its copy
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
    return vision, llm
