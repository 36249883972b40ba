"""Start from a LLaVA model users already have: `model.base` (a HF Llava, LLaVA-NeXT or OneVision directory or hub id,
a vistune export, merged or base+lora, or LLaVA's own checkpoint format, converted on the fly).

The base keeps its projector, processor, image token, vision feature layer / select strategy and chat template;
only what the run trains changes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

ADAPTER_MODES = ("continue", "merge")  # a base+lora export's adapter: train it further, or fold it in first
_ADAPTER_DIR = "adapter"
# bitsandbytes must leave these unquantised: only the LLM's linear layers are 4-bit in QLoRA (as when composing)
_KEEP_FULL_PRECISION = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]  # full module paths (transformers 5)


class BaseError(ValueError):
    """A `model.base` that cannot be used, with what to do instead."""


def local_config(base: str) -> dict | None:
    """The base's config.json when it is a local directory, else None (a hub id)."""
    path = Path(base) / "config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BaseError(f"{path}: not valid JSON ({err})") from None


def base_kind(base: str) -> str:
    """'llava-format' (LLaVA's own checkpoint), 'llava' (an HF Llava, LlavaNext or LlavaOnevision directory) or
    'hub' (not local)."""
    from vistune.model.anyres import ARCHS
    from vistune.model.checkpoints.llava_format import is_llava_format

    config = local_config(base)
    if config is None:
        if Path(base).exists():
            raise BaseError(f"model.base {base}: no config.json (not a model directory)")
        return "hub"
    if is_llava_format(config):
        return "llava-format"
    if config.get("model_type") not in ARCHS:
        raise BaseError(
            f"model.base {base}: config.json model_type is {config.get('model_type')!r}, not one of "
            f"{', '.join(ARCHS)} (model.base takes a LLaVA model; compose a new one from parts with model.vision / "
            "model.llm)"
        )
    return "llava"


def base_arch(base: str) -> str:
    """'llava', 'llava_next' or 'llava_onevision': which transformers class holds the base (its model_type)."""
    from transformers import AutoConfig

    from vistune.model.anyres import check_arch

    kind = base_kind(base)
    if kind == "llava-format":
        return "llava"
    config = local_config(base) if kind == "llava" else AutoConfig.from_pretrained(base).to_dict()
    try:
        return check_arch(config.get("model_type"))
    except ValueError as err:
        raise BaseError(f"model.base {base}: {err}") from None


def base_adapter(base: str) -> Path | None:
    """The adapter of a vistune base+lora export (`BASE/adapter/`), if any."""
    inner = Path(base) / _ADAPTER_DIR
    return inner if (inner / "adapter_config.json").is_file() else None


def base_template(base: str) -> str:
    """The conversation template that `template: auto` means for a base: the one a vistune export records in its
    base.json, else 'auto' (the base's own chat template, rendered as the processor carries it)."""
    record = Path(base) / "base.json"
    config = local_config(base)
    if config is not None and base_kind(base) == "llava-format":
        from vistune.model.checkpoints.llava_format import template_of

        return template_of(config)
    if record.is_file():
        template = json.loads(record.read_text()).get("template")
        if template and template != "auto":
            return template
    return "auto"


def base_llava_config(base: str, vision: str | None = None, local_only: bool = False):
    """The base's LlavaConfig from its config files only (no weight is read); a LLaVA-format base's is derived
    (its image token is the one the conversion appends). `local_only`: never download (dry runs, the planner)."""
    from transformers import AutoConfig

    kind = base_kind(base)
    if kind == "llava-format":
        from vistune.model.checkpoints.llava_format import llava_config_of, llava_format_configs

        config = local_config(base)
        vcfg, tcfg = llava_format_configs(config, vision, local_only=local_only)
        return llava_config_of(config, vcfg, tcfg, image_token_index=int(config.get("vocab_size", 32000)))
    return AutoConfig.from_pretrained(base, local_files_only=local_only or kind != "hub")


def base_tokenizer(base: str):
    """The base's tokenizer as training uses it: `<image>` and a pad token present, the base's chat template."""
    from transformers import AutoProcessor, AutoTokenizer

    from vistune.model.compose import add_special_tokens

    if base_kind(base) == "llava-format":
        tokenizer = AutoTokenizer.from_pretrained(base)
        add_special_tokens(tokenizer)
        return tokenizer
    return with_chat_template(AutoProcessor.from_pretrained(base)).tokenizer


def load_base(
    base: str,
    *,
    dtype: str | torch.dtype = "float32",
    load_in_4bit: bool = False,
    device_map=None,
    attn_implementation: str | None = None,
    allow_pickle: bool = False,
    adapter: str = "continue",
    vision: str | None = None,
):
    """Returns `(model, processor, adapter_dir)`: the base Llava model and its processor.

    For a base+lora export, `adapter="merge"` folds its adapter into the weights (adapter_dir None) and
    `"continue"` returns the adapter directory for the caller to keep training. `vision` names a local CLIP
    directory for a LLaVA-format base (its `mm_vision_tower` is a hub id).
    """
    from transformers import AutoProcessor, BitsAndBytesConfig

    from vistune.model.anyres import has_torchvision, model_class
    from vistune.model.compose import refuse_pickle_only, torch_dtype
    from vistune.model.generation import repair_generation_config

    if adapter not in ADAPTER_MODES:
        raise BaseError(f"model.base_adapter: {adapter!r} is not one of {', '.join(ADAPTER_MODES)}")
    dtype = torch_dtype(dtype)
    kind = base_kind(base)
    if kind == "llava-format":
        if load_in_4bit:
            raise BaseError(f"model.base {base}: a LLaVA-format checkpoint cannot be quantised while it is converted; "
                            f"run `vistune model import-llava {base} OUT` and use OUT as model.base")
        from vistune.model.checkpoints.llava_format import convert_llava

        model, processor, _ = convert_llava(base, vision=vision, dtype=dtype, allow_pickle=allow_pickle)
        return model, with_chat_template(processor), None
    if kind == "llava" and not allow_pickle:
        refuse_pickle_only(base, "model.base")
    found_adapter = base_adapter(base) if kind == "llava" else None
    if found_adapter is not None and adapter == "merge" and load_in_4bit:
        raise BaseError(f"model.base {base}: merging its adapter into 4-bit weights would re-quantise them; "
                        f"export the run merged (vistune export --mode merged) and use that as model.base")
    extra = {}
    if load_in_4bit:
        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=dtype, llm_int8_skip_modules=_KEEP_FULL_PRECISION,
        )
    if attn_implementation:
        extra["attn_implementation"] = attn_implementation
    arch = base_arch(base)
    if arch == "llava_onevision" and not has_torchvision():
        raise BaseError(f"model.base {base}: a LLaVA-OneVision base needs torchvision (transformers builds its "
                        "processor's video part on it); install the torchvision build that matches your torch")
    # LLaVA-NeXT / OneVision keep their grids, image_newline, feature layer and select strategy: all in the config
    model = model_class(arch).from_pretrained(
        base, dtype=dtype, device_map=device_map, use_safetensors=None if allow_pickle else True, **extra
    )
    repair_generation_config(model.generation_config, f"{base}/generation_config.json")
    processor = with_chat_template(AutoProcessor.from_pretrained(base))
    if processor.tokenizer.pad_token is None:
        raise BaseError(f"model.base {base}: its tokenizer has no pad token (set pad_token in tokenizer_config.json)")
    if found_adapter is not None and adapter == "merge":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(found_adapter)).merge_and_unload()
        log.info("merged the base's adapter %s into its weights", found_adapter)
        found_adapter = None
    return model, processor, found_adapter


def continue_adapter(model, adapter_dir: Path, gradient_checkpointing: bool = False):
    """Wraps `model` in the base's trained adapter, trainable (the run continues it rather than starting anew)."""
    from peft import PeftModel, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)


def with_chat_template(processor):
    """The tokenizer renders with the base's chat template too (template 'auto' renders through the tokenizer)."""
    if getattr(processor, "chat_template", None) and not getattr(processor.tokenizer, "chat_template", None):
        processor.tokenizer.chat_template = processor.chat_template
    return processor
