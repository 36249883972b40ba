"""LLaVA's own checkpoint formats (haotian-liu/LLaVA) -> HF-native `LlavaForConditionalGeneration`.

Three sources: a full checkpoint (`LlavaLlamaForCausalLM` / `LlavaMistralForCausalLM`), a LoRA output directory
(`adapter_config.json` + `adapter_model.*` + `non_lora_trainables.bin`) on its base LLM, and a stage-1
`mm_projector.bin` (-> vistune's `projector.safetensors`). Every source tensor is mapped (the mapping is returned
and listed by `vistune model import-llava`); a tensor with no place, or a model weight with no source, is an error.
Layouts as LLaVA writes them: llava/model/llava_arch.py (module names), multimodal_projector/builder.py
(`linear`, `mlpNx_gelu` = Sequential(Linear, GELU, Linear)), multimodal_encoder/clip_encoder.py (hidden_states
[select_layer], `patch` drops CLS), train/train.py (`non_lora_trainables.bin`, `mm_projector.bin` keys).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vistune.model.checkpoints.weight_files import WeightFileError, load_file_checked, read_json, read_weights

LLAVA_ARCHITECTURES = {"LlavaLlamaForCausalLM": "llama", "LlavaMistralForCausalLM": "mistral"}
PROJECTOR_TYPES = ("linear", "mlp2x_gelu")
_LLAVA_ONLY_KEYS = ("mm_", "tune_mm_", "freeze_mm_", "unfreeze_mm_", "use_mm_proj", "image_aspect_ratio",
                    "image_grid_pinpoints", "tokenizer_model_max_length", "tokenizer_padding_side")
_VISION_PREFIX = "model.vision_tower.vision_tower."  # LLaVA's CLIPVisionTower wraps HF's CLIPVisionModel
_CONVERTED_DIR = "converted"
TEMPLATE_OF_ARCH = {"llama": "vicuna_v1", "mistral": "auto"}  # conv_mode llava_v1 (LLaVA-1.5); mistral: its own


class LlavaFormatError(WeightFileError):
    """A LLaVA checkpoint that is incomplete, inconsistent, or a variant HF Llava cannot represent."""


@dataclass
class Mapping:
    """Where every source tensor went: `target` is an HF name, or a note (merged / recomputed buffer)."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, source: str, target: str) -> None:
        self.lines.append((source, target))

    def summary(self) -> list[str]:
        """The mapping with layer numbers folded (`layers.*`), one line per pattern, with counts."""
        counts: dict[tuple[str, str], int] = {}
        for source, target in self.lines:
            key = (re.sub(r"\.\d+\.", ".*.", source), re.sub(r"\.\d+\.", ".*.", target))
            counts[key] = counts.get(key, 0) + 1
        return [f"{s} -> {t}" + (f"  (x{n})" if n > 1 else "") for (s, t), n in counts.items()]


def is_llava_format(config: dict) -> bool:
    """LLaVA's own config.json (its model_type is also 'llava', so the architecture and mm_ keys tell)."""
    return "mm_vision_tower" in config or bool(set(config.get("architectures") or []) & set(LLAVA_ARCHITECTURES))


def check_variant(config: dict, where: str) -> None:
    """Refuses what HF Llava cannot represent, naming the config key."""
    projector = config.get("mm_projector_type", "linear")
    if projector not in PROJECTOR_TYPES:
        raise LlavaFormatError(f"{where}: mm_projector_type {projector!r} is not supported (only "
                               f"{', '.join(PROJECTOR_TYPES)}: HF Llava has no place for its weights)")
    if "unpad" in str(config.get("mm_patch_merge_type", "flat")) or "anyres" in str(config.get("image_aspect_ratio", "")):
        raise LlavaFormatError(f"{where}: mm_patch_merge_type {config.get('mm_patch_merge_type')!r} / image_aspect_ratio "
                               f"{config.get('image_aspect_ratio')!r} (LLaVA-NeXT anyres) is not supported yet")
    for key in ("mm_use_im_start_end", "mm_use_im_patch_token"):
        if config.get(key):
            raise LlavaFormatError(f"{where}: {key}: true (extra image marker tokens) is not supported by HF Llava")
    if config.get("mm_vision_select_feature", "patch") not in ("patch", "cls_patch"):
        raise LlavaFormatError(f"{where}: mm_vision_select_feature {config['mm_vision_select_feature']!r} is unknown")
    if config.get("mm_resampler_type") or config.get("mm_vision_resampler"):
        raise LlavaFormatError(f"{where}: a vision resampler (mm_resampler_type) is not supported")


def _text_config(config: dict):
    from transformers import AutoConfig

    arch = next((LLAVA_ARCHITECTURES[a] for a in config.get("architectures") or [] if a in LLAVA_ARCHITECTURES), "llama")
    values = {k: v for k, v in config.items()
              if not k.startswith(_LLAVA_ONLY_KEYS) and k not in ("architectures", "model_type", "_name_or_path")}
    return AutoConfig.for_model(arch, **values), arch


def _vision_source(config: dict, vision: str | None) -> str:
    source = vision or config.get("mm_vision_tower")
    if not source:
        raise LlavaFormatError("no vision tower: the config has no mm_vision_tower and --vision was not given")
    return source


def check_vision_width(config: dict, vision_config, src) -> None:
    """mm_hidden_size is the tower's width the projector was trained on: a different tower cannot stand in."""
    width = config.get("mm_hidden_size")
    if width is not None and int(width) != vision_config.hidden_size:
        raise LlavaFormatError(f"{src}/config.json: mm_hidden_size {width} but the vision tower "
                               f"{config.get('mm_vision_tower')!r} given has width {vision_config.hidden_size}")


def llava_format_configs(config: dict, vision: str | None = None, local_only: bool = False):
    """(vision config, text config) of a LLaVA-format checkpoint, without reading weights."""
    from transformers import AutoConfig

    from vistune.model.presets import resolve_vision

    source = _vision_source(config, vision)
    try:
        vcfg = AutoConfig.from_pretrained(resolve_vision(source), local_files_only=local_only)
    except OSError as err:
        raise LlavaFormatError(f"vision tower {source!r} (mm_vision_tower) is not on this machine: give a local CLIP "
                               f"directory (--vision / model.base_vision) [{type(err).__name__}]") from None
    return getattr(vcfg, "vision_config", vcfg), _text_config(config)[0]


def template_of(config: dict) -> str:
    """The conversation template a LLaVA checkpoint was trained with (LLaVA-1.5: conv_mode llava_v1 = vicuna_v1)."""
    archs = config.get("architectures") or []
    return next((TEMPLATE_OF_ARCH[LLAVA_ARCHITECTURES[a]] for a in archs if a in LLAVA_ARCHITECTURES), "vicuna_v1")


def _merge_lora(state: dict, adapter_dir: Path, allow_pickle: bool, mapping: Mapping) -> None:
    """Folds a LLaVA LoRA adapter into `state` (HF Llama names): W += B @ A * scale, as LLaVA's builder merges."""
    cfg = read_json(adapter_dir / "adapter_config.json")
    for key in ("use_dora", "use_rslora"):
        if cfg.get(key) and key == "use_dora":
            raise LlavaFormatError(f"{adapter_dir}/adapter_config.json: {key}: true is not supported")
    if cfg.get("bias", "none") != "none":
        raise LlavaFormatError(f"{adapter_dir}/adapter_config.json: bias {cfg['bias']!r} is not supported (only 'none')")
    r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    scale = alpha / (r ** 0.5) if cfg.get("use_rslora") else alpha / r
    files = [adapter_dir / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (adapter_dir / n).is_file()]
    if not files:
        raise LlavaFormatError(f"{adapter_dir}: no adapter_model.safetensors / adapter_model.bin")
    adapter = load_file_checked(files[0], allow_pickle)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in adapter.items():
        m = re.fullmatch(r"base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight", name)
        if not m:
            raise LlavaFormatError(f"{files[0]}: tensor {name} is not a LoRA A/B weight (cannot be merged)")
        pairs.setdefault(m.group(1), {})[m.group(2)] = tensor
    for module, ab in sorted(pairs.items()):
        target = f"{module}.weight"
        if set(ab) != {"A", "B"} or target not in state:
            raise LlavaFormatError(f"{files[0]}: LoRA for {module} is incomplete or targets no base weight")
        weight = state[target]
        delta = (ab["B"].float() @ ab["A"].float()) * scale
        state[target] = weight.float() + delta  # fp32: the output dtype is applied once, at the end
        for part in "AB":
            mapping.add(f"base_model.model.{module}.lora_{part}.weight", f"merged into {target}")


def _hf_name(name: str, projector: str) -> str | None:
    """LLaVA name -> HF Llava name (None: no place)."""
    if name.startswith(_VISION_PREFIX):  # transformers 5 names CLIPVisionModel's weights without `vision_model.`
        return "model.vision_tower." + name[len(_VISION_PREFIX):].removeprefix("vision_model.")
    if name.startswith("model.mm_projector."):
        rest = name[len("model.mm_projector."):]
        if projector == "linear":
            return "model.multi_modal_projector.linear_1." + rest if rest in ("weight", "bias") else None
        m = re.fullmatch(r"([02])\.(weight|bias)", rest)
        return f"model.multi_modal_projector.linear_{1 if m.group(1) == '0' else 2}.{m.group(2)}" if m else None
    if name == "lm_head.weight":
        return name
    if name.startswith("model."):
        return "model.language_model." + name[len("model."):]
    return None


def convert_llava(src: str | Path, *, vision: str | None = None, base: str | None = None,
                  dtype: str | torch.dtype | None = None, allow_pickle: bool = False):
    """Converts LLaVA's full checkpoint (or LoRA output dir on `base`) to `(model, processor, mapping)`.

    The converted directory is cached under SRC's import cache so a base used again is not converted twice.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    out = import_cache(Path(src), vision, base)
    if not (out / "import-llava.json").is_file():  # written last: a complete conversion
        import_llava(src, out, vision=vision, base=base, dtype=dtype, allow_pickle=allow_pickle)
    model = LlavaForConditionalGeneration.from_pretrained(str(out), dtype=_dtype(dtype, {}))
    mapping = Mapping([tuple(x) for x in json.loads((out / "import-llava.json").read_text())["mapping"]])
    return model, AutoProcessor.from_pretrained(str(out)), mapping


def import_cache(src: Path, vision: str | None = None, base: str | None = None) -> Path:
    """Where a checkpoint converted on the fly is kept: $VISTUNE_CACHE/llava-import/<name>-<hash of the inputs>."""
    import hashlib
    import os

    key = json.dumps([str(src.resolve()), (src / "config.json").read_text(), vision, base])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    root = Path(os.environ.get("VISTUNE_CACHE", Path.home() / ".cache" / "vistune"))
    return root / "llava-import" / f"{src.name}-{digest}" / _CONVERTED_DIR


def _dtype(dtype, config: dict) -> torch.dtype:
    from vistune.model.compose import torch_dtype

    return torch_dtype(dtype or config.get("torch_dtype") or config.get("dtype") or "float32")


def import_llava(src: str | Path, out: str | Path, *, vision: str | None = None, base: str | None = None,
                 dtype: str | torch.dtype | None = None, allow_pickle: bool = False) -> Mapping:
    """Writes the HF-native Llava directory `out` from a LLaVA checkpoint `src`; returns the tensor mapping.

    `vision`: a local CLIP directory (LLaVA names its tower by hub id in mm_vision_tower; the tower's weights come
    from the checkpoint when it holds them, its config and image processor from here). `base`: the LLM a LoRA
    output directory was trained on (its tokenizer and weights; the adapter is merged, as LLaVA's builder does).
    """
    from huggingface_hub import save_torch_state_dict
    from transformers import AutoTokenizer, LlavaProcessor

    from vistune import IMAGE_TOKEN
    from vistune.model.compose import add_special_tokens, load_vision_tower

    src, out = Path(src), Path(out)
    config = read_json(src / "config.json")
    if not is_llava_format(config):
        raise LlavaFormatError(f"{src}/config.json: no mm_vision_tower and no LLaVA architecture (not LLaVA's format)")
    check_variant(config, f"{src}/config.json")
    target_dtype = _dtype(dtype, config)
    mapping = Mapping()
    is_lora = (src / "adapter_config.json").is_file()
    if is_lora:
        if not base:
            raise LlavaFormatError(f"{src}: a LoRA output directory; give the LLM it was trained on with --base DIR")
        if not (src / "non_lora_trainables.bin").is_file():
            raise LlavaFormatError(f"{src}/non_lora_trainables.bin: missing (it holds the trained projector)")
        state = read_weights(Path(base), allow_pickle)
        _merge_lora(state, src, allow_pickle, mapping)
        extra = load_file_checked(src / "non_lora_trainables.bin", allow_pickle)
        extra = {k.removeprefix("base_model.").removeprefix("model.") if k.startswith("base_model.model.model.")
                 else k.removeprefix("base_model."): v for k, v in extra.items()}
        state.update(extra)
        tokenizer_dir = base
    else:
        state = read_weights(src, allow_pickle)
        tokenizer_dir = str(src)

    try:
        tower, image_processor, family = load_vision_tower(_vision_source(config, vision), target_dtype, allow_pickle)
    except OSError as err:
        raise LlavaFormatError(f"{src}: vision tower {_vision_source(config, vision)!r} (mm_vision_tower) cannot be "
                               f"loaded here; give a local CLIP directory with --vision DIR (model.base_vision) "
                               f"[{type(err).__name__}]") from None
    if family != "clip":
        raise LlavaFormatError(f"{src}: vision tower {config.get('mm_vision_tower')!r} is not CLIP (LLaVA's CLIPVisionTower)")
    text_config, _ = _text_config(config)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    add_special_tokens(tokenizer, IMAGE_TOKEN)

    projector = config.get("mm_projector_type", "linear")
    hf: dict[str, torch.Tensor] = {}
    leftovers = []
    for name, tensor in state.items():
        if name.endswith("rotary_emb.inv_freq"):
            mapping.add(name, "recomputed buffer (rotary inv_freq; transformers derives it from rope_theta)")
            continue
        target = _hf_name(name, projector)
        if target is None:
            leftovers.append(name)
            continue
        hf[target] = tensor.to(target_dtype)
        mapping.add(name, target)
    if leftovers:
        raise LlavaFormatError(f"{src}: {len(leftovers)} tensors have no place in HF Llava, e.g. {leftovers[0]}")
    if not any(k.startswith("model.vision_tower.") for k in hf):
        for name, tensor in tower.state_dict().items():
            hf["model.vision_tower." + name] = tensor.to(target_dtype)
            mapping.add(f"{_vision_source(config, vision)}:{name}", "model.vision_tower." + name)
    hidden = text_config.hidden_size
    if projector == "linear":  # LLaVA's single Linear = HF's linear_1, identity activation, identity linear_2
        hf["model.multi_modal_projector.linear_2.weight"] = torch.eye(hidden, dtype=target_dtype)
        hf["model.multi_modal_projector.linear_2.bias"] = torch.zeros(hidden, dtype=target_dtype)
        mapping.add("(linear projector)", "model.multi_modal_projector.linear_2 = identity, act = linear")

    _grow_vocab(hf, len(tokenizer), mapping)
    text_config.vocab_size = hf["model.language_model.embed_tokens.weight"].shape[0]
    text_config.pad_token_id = tokenizer.pad_token_id
    check_vision_width(config, tower.config, src)
    llava_config = llava_config_of(config, tower.config, text_config, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    vcfg, drop_cls = tower.config, llava_config.vision_feature_select_strategy == "default"
    llava_config.dtype = target_dtype
    _check_shapes(llava_config, hf, src)

    out.mkdir(parents=True, exist_ok=True)
    llava_config.save_pretrained(str(out))
    save_torch_state_dict(hf, str(out), max_shard_size="5GB", metadata={"format": "pt", "producer": "vistune"})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=vcfg.patch_size,
        vision_feature_select_strategy=llava_config.vision_feature_select_strategy,
        num_additional_image_tokens=1 if drop_cls else 0, image_token=IMAGE_TOKEN,
        chat_template=tokenizer.chat_template,
    )
    processor.save_pretrained(str(out))
    from transformers import GenerationConfig

    from vistune.model.generation import repair_generation_config

    if (src / "generation_config.json").is_file():  # Vicuna's samples without do_sample: repaired, then saved
        generation = GenerationConfig.from_pretrained(str(src))
    else:  # from the text config's special tokens
        generation = GenerationConfig.from_model_config(text_config)
    repair_generation_config(generation, str(src / "generation_config.json")).save_pretrained(str(out))
    record = {"template": template_of(config), "imported_from": str(src.resolve()),
              "image_aspect_ratio": config.get("image_aspect_ratio", "square"), "lora_base": base}
    (out / "base.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "import-llava.json").write_text(json.dumps({**record, "mapping": mapping.lines}, indent=1) + "\n")
    return mapping


def llava_config_of(config: dict, vision_config, text_config, image_token_index: int):
    """The HF LlavaConfig equivalent to a LLaVA config.json (select layer, CLS handling, projector kind)."""
    from transformers import LlavaConfig

    drop_cls = config.get("mm_vision_select_feature", "patch") == "patch"
    side = vision_config.image_size // vision_config.patch_size
    return LlavaConfig(
        vision_config=vision_config.to_dict(), text_config=text_config.to_dict(), image_token_index=image_token_index,
        image_seq_length=side * side + (0 if drop_cls else 1),
        projector_hidden_act="gelu" if config.get("mm_projector_type", "linear") == "mlp2x_gelu" else "linear",
        vision_feature_select_strategy="default" if drop_cls else "full",
        vision_feature_layer=int(config.get("mm_vision_select_layer", -2)),
        multimodal_projector_bias=True, tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


def _grow_vocab(hf: dict, size: int, mapping: Mapping) -> None:
    """Rows for tokens the import adds (the image token, a pad token) start at the mean of the existing rows."""
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        if name not in hf:
            if name == "lm_head.weight":
                continue
            raise LlavaFormatError(f"the checkpoint has no {name.replace('language_model.', '')}")
        weight = hf[name]
        if weight.shape[0] < size:
            extra = weight.float().mean(0, keepdim=True).expand(size - weight.shape[0], -1).to(weight.dtype)
            hf[name] = torch.cat([weight, extra])
            mapping.add(f"(new token rows {weight.shape[0]}..{size - 1})", f"{name}: mean of the existing rows")


def _check_shapes(llava_config, hf: dict, src: Path) -> None:
    """Every HF weight has a source of the right shape, and every converted tensor a weight."""
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in LlavaForConditionalGeneration(llava_config).state_dict().items()}
    if llava_config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    for name, shape in expected.items():
        if name not in hf:
            raise LlavaFormatError(f"{src}: no source tensor for {name} (the checkpoint is incomplete)")
        if tuple(hf[name].shape) != shape:
            raise LlavaFormatError(f"{src}: {name} has shape {tuple(hf[name].shape)}, the config implies {shape} "
                                   "(mm_hidden_size / hidden_size / mm_projector_type do not match the weights)")
    extra = sorted(set(hf) - set(expected))
    if extra:
        raise LlavaFormatError(f"{src}: tensor {extra[0]} has no place in HF Llava ({len(extra)} such)")


def import_projector(src: str | Path, out: str | Path, allow_pickle: bool = False) -> Mapping:
    """A stage-1 `mm_projector.bin` (or its directory) -> vistune's projector.safetensors (mlp2x_gelu only)."""
    from vistune.model.checkpoints.projector import save_projector

    src = Path(src)
    file = src / "mm_projector.bin" if src.is_dir() else src
    config_file = file.parent / "config.json"
    if config_file.is_file():
        config = read_json(config_file)
        if config.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
            raise LlavaFormatError(f"{config_file}: mm_projector_type {config['mm_projector_type']!r}: vistune's "
                                   "projector is mlp2x_gelu (import a full checkpoint for a linear one)")
    state = load_file_checked(file, allow_pickle)
    mapping, out_state = Mapping(), {}
    for name, tensor in state.items():
        m = re.fullmatch(r"(?:base_model\.model\.)?model\.mm_projector\.([02])\.(weight|bias)", name)
        if not m:
            raise LlavaFormatError(f"{file}: tensor {name} is not an mlp2x_gelu projector weight "
                                   "(mm_projector.0.* / mm_projector.2.*)")
        target = f"multi_modal_projector.linear_{1 if m.group(1) == '0' else 2}.{m.group(2)}"
        out_state[target] = tensor.float().contiguous()
        mapping.add(name, target)
    if len(out_state) != 4:
        raise LlavaFormatError(f"{file}: expected 4 tensors (mm_projector.0/.2 weight and bias), found {sorted(state)}")
    w1, w2 = out_state["multi_modal_projector.linear_1.weight"], out_state["multi_modal_projector.linear_2.weight"]
    if w2.shape[0] != w2.shape[1] or w1.shape[0] != w2.shape[1]:
        raise LlavaFormatError(f"{file}: projector shapes {tuple(w1.shape)} -> {tuple(w2.shape)} are not an mlp2x_gelu")
    save_projector(out_state, out)
    return mapping
