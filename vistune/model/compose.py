"""Compose a transformers LLaVA (`LlavaForConditionalGeneration`, or LLaVA-NeXT / OneVision with `arch`) from a
vision checkpoint and an LLM checkpoint.

The parts are loaded with their own `from_pretrained` (so 4-bit loading, device maps and GGUF all work as
transformers does them) and placed into a Llava model built on the meta device: no weight is copied twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vistune import IMAGE_TOKEN
from vistune.model.generation import repair_generation_config
from vistune.model.presets import resolve_llm, resolve_vision

log = logging.getLogger(__name__)

_VISION_FAMILIES = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel"}


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    """'float32' / 'fp32' / 'bf16' / 'bfloat16' / 'fp16' / 'float16' -> torch.dtype."""
    if isinstance(name, torch.dtype):
        return name
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    dtype = getattr(torch, aliases.get(name, name), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}: use float32, bfloat16 or float16")
    return dtype


class PickleWeightsRefused(ValueError):
    """A checkpoint holds only pickle weights (.bin / .pt), which can run code on load; safetensors only by default."""


def refuse_pickle_only(path: str, what: str) -> None:
    """Raises PickleWeightsRefused when the local directory `path` has pickle weights but no .safetensors."""
    directory = Path(path)
    if not directory.is_dir() or any(directory.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickles:
        raise PickleWeightsRefused(
            f"{what} {path}: only pickle weights ({', '.join(pickles[:3])}); vistune loads safetensors only, because "
            "unpickling a file can run arbitrary code. Convert it to safetensors, or set model.allow_pickle: true "
            "if you trust where it came from."
        )


def load_vision_tower(vision: str, dtype: torch.dtype, allow_pickle: bool = False):
    """A CLIP or SigLIP vision tower (from a vision-only or a full dual-encoder checkpoint) + its processor."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor

    path = resolve_vision(vision)
    if not allow_pickle:
        refuse_pickle_only(path, "vision tower")
    config = AutoConfig.from_pretrained(path)
    vision_config = getattr(config, "vision_config", config)
    family = vision_config.model_type.removesuffix("_vision_model")
    if family not in _VISION_FAMILIES:
        raise ValueError(f"{vision}: vision model type {vision_config.model_type!r} is not CLIP or SigLIP")
    model_class = getattr(transformers, _VISION_FAMILIES[family])
    # use_safetensors=None: safetensors when present, else the pickle .bin (only with allow_pickle)
    tower = model_class.from_pretrained(path, dtype=dtype, use_safetensors=None if allow_pickle else True)
    processor = AutoImageProcessor.from_pretrained(path, backend=_image_backend())
    return tower, processor, family


def vision_input_size(vision: str) -> int:
    """The tower's input side in pixels, read from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_vision(vision))
    return int(getattr(config, "vision_config", config).image_size)


def _image_backend() -> str | None:
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a wheel that does not match torch
        return "pil"
    return None


def load_llm(llm: str, dtype: torch.dtype, device_map=None, load_in_4bit: bool = False, **kwargs):
    """A causal LM and its tokenizer, from a directory, a hub id, or a .gguf file (dequantised on load)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    path = resolve_llm(llm)
    source, extra = path, {}
    if path.endswith(".gguf"):
        source, extra = str(Path(path).parent), {"gguf_file": Path(path).name}
    else:
        extra["use_safetensors"] = None if kwargs.get("allow_pickle") else True
        if extra["use_safetensors"]:
            refuse_pickle_only(path, "LLM")
    kwargs.pop("allow_pickle", None)
    if load_in_4bit:
        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_quant_storage=dtype,
        )
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=extra.get("gguf_file"))
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=device_map, **extra, **kwargs)
    return model, tokenizer


def add_special_tokens(tokenizer, image_token: str = IMAGE_TOKEN) -> list[str]:
    """Adds the image token and, where the LLM has none, a pad token (its unk, else a new '<pad>')."""
    added = []
    if image_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
        added.append(image_token)
    if tokenizer.pad_token is None:
        if tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            added.append("<pad>")
    return added


def resize_embeddings_to_mean(lm, new_size: int) -> None:
    """Grows the input (and untied output) embeddings to `new_size` rows when they have fewer (a checkpoint's spare
    pad rows are kept, never cut); new rows start at the mean of the old rows."""
    old_size = lm.get_input_embeddings().weight.shape[0]
    if new_size <= old_size:
        return
    lm.resize_token_embeddings(new_size, mean_resizing=False)
    with torch.no_grad():
        for emb in {id(m.weight): m for m in (lm.get_input_embeddings(), lm.get_output_embeddings()) if m}.values():
            emb.weight[old_size:] = emb.weight[:old_size].mean(dim=0, keepdim=True)


def build_llava(
    vision: str,
    llm: str,
    *,
    dtype: str | torch.dtype = "float32",
    device_map: str | dict | None = None,
    load_in_4bit: bool = False,
    vision_feature_layer: int = -2,
    image_token: str = IMAGE_TOKEN,
    chat_template: str | None = None,
    attn_implementation: str | None = None,
    allow_pickle: bool = False,
    arch: str = "llava",
    image_grid_pinpoints: list[list[int]] | None = None,
    vision_aspect_ratio: str = "anyres_max_9",
):
    """Composes LLaVA-1.5: `vision` tower -> 2-layer GELU MLP projector -> `llm`.

    `arch` llava_next / llava_onevision composes the same parts into transformers' any-resolution classes
    (`vistune.model.anyres`): images tiled on `image_grid_pinpoints` (default: the published grids), a learned
    `image_newline`, and OneVision's `vision_aspect_ratio` pooling.

    `vision`/`llm` are preset names (`vistune.model.presets`), local directories, hub ids or (llm) a
    .gguf file. Returns `(LlavaForConditionalGeneration, LlavaProcessor)`; the projector is freshly
    initialised (load a stage-1 projector with `load_projector`). `chat_template` is the Jinja text the processor
    carries (default: the tokenizer's own; `vistune.data_prep.get_template(name).jinja` gives a template's).
    """
    from vistune.model import anyres

    anyres.check_arch(arch)
    dtype = torch_dtype(dtype)
    tower, image_processor, family = load_vision_tower(vision, dtype, allow_pickle)
    lm_kwargs = {"allow_pickle": allow_pickle}
    if attn_implementation:
        lm_kwargs["attn_implementation"] = attn_implementation
    lm, tokenizer = load_llm(llm, dtype, device_map, load_in_4bit, **lm_kwargs)

    add_special_tokens(tokenizer, image_token)
    resize_embeddings_to_mean(lm, len(tokenizer))
    lm.config.pad_token_id = tokenizer.pad_token_id

    vcfg = tower.config
    drop_cls = family == "clip"  # CLIP has a CLS token (LLaVA drops it); SigLIP has none
    arch_kwargs = {}
    if arch != "llava":
        pinpoints = anyres.check_pinpoints(image_grid_pinpoints or anyres.default_pinpoints(arch, vcfg.image_size),
                                           vcfg.image_size)
        arch_kwargs["image_grid_pinpoints"] = pinpoints
        if arch == "llava_onevision":
            arch_kwargs["vision_aspect_ratio"] = anyres.check_aspect_ratio(vision_aspect_ratio)
    config = anyres.config_class(arch)(
        vision_config=vcfg.to_dict(),
        text_config=lm.config.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids(image_token),
        **({} if arch == "llava_onevision" else {"image_seq_length": (vcfg.image_size // vcfg.patch_size) ** 2}),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default" if drop_cls else "full",
        vision_feature_layer=vision_feature_layer,
        multimodal_projector_bias=True,
        tie_word_embeddings=bool(getattr(lm.config, "tie_word_embeddings", False)),
        **arch_kwargs,
    )
    config.dtype = dtype
    with torch.device("meta"):
        model = anyres.model_class(arch)(config)
    device = lm.get_input_embeddings().weight.device
    model.model.vision_tower = tower.to(device)
    model.model.language_model = lm.model
    model.lm_head = lm.lm_head
    model.model.multi_modal_projector = anyres.projector_class(arch)(config).to(device=device, dtype=dtype)
    if arch != "llava":
        model.model.image_newline = anyres.new_image_newline(lm.config.hidden_size, dtype, device)
    model.generation_config = lm.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    repair_generation_config(model.generation_config, f"{llm} generation_config.json")
    if load_in_4bit:  # let PEFT / Trainer see the quantised LLM inside
        model.is_loaded_in_4bit = True
        model.hf_quantizer = getattr(lm, "hf_quantizer", None)
    # the embedding's rows, which may exceed the tokenizer (Qwen2: 152064 rows, 151646 tokens): exports must agree
    model.config.text_config.vocab_size = lm.get_input_embeddings().weight.shape[0]

    processor = anyres.build_processor(
        arch, image_processor, tokenizer,
        patch_size=vcfg.patch_size,
        tower_size=vcfg.image_size,
        drop_cls=drop_cls,
        pinpoints=arch_kwargs.get("image_grid_pinpoints"),
        vision_aspect_ratio=vision_aspect_ratio,
        image_token=image_token,
        chat_template=chat_template or tokenizer.chat_template,
    )
    return model, processor


def llava_of(model: torch.nn.Module):
    """The LLaVA model (Llava, LlavaNext or LlavaOnevision ForConditionalGeneration) inside any wrapper (PEFT,
    DeepSpeed engine, DDP)."""
    from vistune.model.anyres import model_classes

    classes = model_classes()
    for module in model.modules():
        if isinstance(module, classes):
            return module
    raise TypeError(f"{type(model).__name__} holds no LlavaForConditionalGeneration")


def num_image_tokens(model_or_config) -> int:
    """Image tokens per image (LLaVA-1.5), or per tower crop (AnyRes): patches, without CLS."""
    config = getattr(model_or_config, "config", model_or_config)
    if getattr(config, "image_seq_length", None):
        return int(config.image_seq_length)
    return (config.vision_config.image_size // config.vision_config.patch_size) ** 2
