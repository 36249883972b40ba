"""The text side of a model without loading its weights: tokenizer (with `<image>`), image tokens, template.

The doctor needs to tokenise like training does, but must not load a 7B LLM to do it; this reads only the
tokenizer files and the vision config of a model preset, or of a composed LLaVA checkpoint directory. For
LLaVA-NeXT / OneVision (an exported directory, or `arch` with a preset) it also holds the arch's processor, whose
token count per image depends on the image's size (read from file headers, never decoding an image).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TextSide:
    tokenizer: object  # with `<image>` and a pad token added exactly as build_llava adds them
    num_image_tokens: int  # image tokens per image (patches, without CLS)
    template: str  # the conversation template the LLM was tuned with ("auto" when unknown)
    processor: object | None = None  # AnyRes: the LlavaNext / LlavaOnevision processor that counts tokens by size

    def image_tokens(self, image_root: str | Path) -> int | Callable:
        """What `tokenize_records` takes: the fixed count, or (AnyRes) a function of the record."""
        if self.processor is None:
            return self.num_image_tokens
        from vistune.data_prep.images.inputs import image_size
        from vistune.model.anyres import image_token_counts

        def counts(record) -> list[int]:
            root = record.image_root or image_root
            return image_token_counts(self.processor, [image_size(p, root) for p in record.images])

        return counts


def load_text_side(model: str = "tiny", arch: str = "llava", pinpoints: list[list[int]] | None = None) -> TextSide:
    """`model`: a model preset name (vistune.model.MODEL_PRESETS) or a composed LLaVA checkpoint directory;
    `arch` (presets only; a directory says its own): llava, llava_next or llava_onevision."""
    from transformers import AutoConfig

    from vistune.model import MODEL_PRESETS, default_template
    from vistune.model.compose import add_special_tokens
    from vistune.model.presets import resolve_llm, resolve_vision

    if model in MODEL_PRESETS:
        vision, llm = MODEL_PRESETS[model]
        config = AutoConfig.from_pretrained(resolve_vision(vision))
        vc = getattr(config, "vision_config", config)
        tokenizer = _tokenizer(resolve_llm(llm))
        add_special_tokens(tokenizer)
        side = TextSide(tokenizer, (vc.image_size // vc.patch_size) ** 2, default_template(llm))
        if arch != "llava":
            side.processor = _anyres_processor(arch, resolve_vision(vision), vc, tokenizer, pinpoints)
        return side
    path = Path(model)
    if not (path / "config.json").exists():
        raise ValueError(f"--model {model!r} is neither a model preset ({', '.join(MODEL_PRESETS)}) "
                         "nor a directory holding a composed LLaVA checkpoint")
    from vistune.model.checkpoints.base import base_llava_config, base_template, base_tokenizer

    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type in ("llava_next", "llava_onevision"):  # an AnyRes directory: its own saved processor counts tokens
        from transformers import AutoProcessor

        config = AutoConfig.from_pretrained(path)
        tokenizer = _tokenizer(str(path))
        add_special_tokens(tokenizer)
        per_crop = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
        return TextSide(tokenizer, per_crop, "auto", AutoProcessor.from_pretrained(path))
    # a LLaVA model (llava-hf, a vistune export, LLaVA's own format): its tokenizer, image tokens and template
    config = base_llava_config(str(path), local_only=True)
    return TextSide(base_tokenizer(str(path)), int(config.image_seq_length), base_template(str(path)))


def _anyres_processor(arch: str, vision_path: str, vision_config, tokenizer, pinpoints):
    from transformers import AutoImageProcessor

    from vistune import IMAGE_TOKEN
    from vistune.model import anyres

    size = vision_config.image_size
    return anyres.build_processor(
        arch, AutoImageProcessor.from_pretrained(vision_path, backend="pil"), tokenizer,
        patch_size=vision_config.patch_size, tower_size=size, drop_cls="clip" in vision_config.model_type,
        pinpoints=anyres.check_pinpoints(pinpoints or anyres.default_pinpoints(arch, size), size),
        vision_aspect_ratio="anyres_max_9", image_token=IMAGE_TOKEN,
        chat_template=None)


def _tokenizer(source: str):
    from transformers import AutoTokenizer

    if source.endswith(".gguf"):
        return AutoTokenizer.from_pretrained(str(Path(source).parent), gguf_file=Path(source).name)
    return AutoTokenizer.from_pretrained(source)
