"""The text side of a model without loading its weights: tokenizer (with `<image>`), image tokens, template.

The doctor needs to tokenise like training does, but must not load a 7B LLM to do it; this reads only the
tokenizer files and the vision config of a model preset, or of a composed LLaVA checkpoint directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class TextSide:
    tokenizer: object  # with `<image>` and a pad token added exactly as build_llava adds them
    num_image_tokens: int  # image tokens per image (patches, without CLS)
    template: str  # the conversation template the LLM was tuned with ("auto" when unknown)


def load_text_side(model: str = "tiny") -> TextSide:
    """`model`: a model preset name (vistune.model.MODEL_PRESETS) or a composed LLaVA checkpoint directory."""
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
        return TextSide(tokenizer, (vc.image_size // vc.patch_size) ** 2, default_template(llm))
    path = Path(model)
    if not (path / "config.json").exists():
        raise ValueError(f"--model {model!r} is neither a model preset ({', '.join(MODEL_PRESETS)}) "
                         "nor a directory holding a composed LLaVA checkpoint")
    from vistune.model.base import base_llava_config, base_template, base_tokenizer

    # a LLaVA model (llava-hf, a vistune export, LLaVA's own format): its tokenizer, image tokens and template
    config = base_llava_config(str(path), local_only=True)
    return TextSide(base_tokenizer(str(path)), int(config.image_seq_length), base_template(str(path)))


def _tokenizer(source: str):
    from transformers import AutoTokenizer

    if source.endswith(".gguf"):
        return AutoTokenizer.from_pretrained(str(Path(source).parent), gguf_file=Path(source).name)
    return AutoTokenizer.from_pretrained(source)
