"""Load a trained LLaVA for inference from what a directory holds, never from what it is called.

Three layouts are recognised: a standard HF Llava directory (exported, or a full fine-tuning run; an `adapter/`
inside, or `adapter=`, is attached), and a vistune run or checkpoint directory (`base.json` naming the exact base
parts + `projector.safetensors` + `adapter/`). A `manifest.json`, when present, is checked first and any file that
does not match it is named in the error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from vistune.model.compose import llava_of
from vistune.model.generation import repair_generation_config

log = logging.getLogger(__name__)

_BASE_FILE = "base.json"
_ADAPTER_DIR = "adapter"
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def _llava_arch(path: Path) -> str | None:
    """'llava' / 'llava_next' / 'llava_onevision' when `path` holds such a standard HF directory, else None."""
    from vistune.model.anyres import ARCHS

    config = path / "config.json"
    if not config.is_file():
        return None
    try:
        values = json.loads(config.read_text())
    except json.JSONDecodeError:
        return None
    model_type = values.get("model_type")
    if model_type == "llava" and "mm_vision_tower" in values:  # LLaVA's own format, not an HF Llava directory
        return None
    return model_type if model_type in ARCHS else None


def _is_llava_dir(path: Path) -> bool:
    return _llava_arch(path) is not None


def is_llava_format_dir(path: Path) -> bool:
    """LLaVA's own checkpoint format (model_type 'llava' too, but mm_vision_tower / a LLaVA architecture)."""
    from vistune.model.checkpoints.llava_format import is_llava_format

    config = path / "config.json"
    try:
        return config.is_file() and is_llava_format(json.loads(config.read_text()))
    except json.JSONDecodeError:
        return False


def _llava_format_template(path: Path) -> str:
    from vistune.model.checkpoints.llava_format import template_of

    return template_of(json.loads((path / "config.json").read_text()))


def _adapter_path(path: Path, adapter: str | Path | None) -> Path | None:
    if adapter is not None:
        adapter = Path(adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter}: no adapter_config.json (not a PEFT adapter directory)")
        return adapter
    inner = path / _ADAPTER_DIR
    return inner if (inner / "adapter_config.json").is_file() else None


def _local_or_name(base: dict, part: str) -> str:
    """The recorded local path of a base part when it still exists here, else its preset name / hub id."""
    local = base.get(f"{part}_path")
    return local if local and Path(local).exists() else base[part]


def load_processor(path: Path):
    """The processor; its tokenizer renders with the processor's chat template too (as template 'auto' needs)."""
    from transformers import AutoProcessor

    from vistune.model.checkpoints.base import with_chat_template

    return with_chat_template(AutoProcessor.from_pretrained(str(path)))


def load_trained(path: str | Path, adapter: str | Path | None = None, dtype: str = "float32", merge: bool = False,
                 *, verify: bool = True, device_map=None, dequantize: bool = False):
    """Returns `(model, processor, template_name)` for any vistune output, checkpoint or exported directory.

    `adapter` overrides the adapter found inside `path`; `merge` folds the LoRA into the LLM (a plain Llava model
    comes back). `template_name` is the conversation template the model was trained with ("auto" if unknown).
    A QLoRA run is rebuilt on its 4-bit base (as trained) unless `dequantize` asks for the base in `dtype`;
    `merge` implies `dequantize` (merging into 4-bit weights would re-quantise them).
    """
    from vistune.model.checkpoints.projector import (
        PROJECTOR_FILE,
        VISION_TOWER_FILE,
        load_projector,
        load_vision_tower_weights,
    )
    from vistune.model.compose import build_llava, torch_dtype

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: not a directory")
    if verify and (path / "manifest.json").is_file():
        from vistune.model.checkpoints.manifest import verify_manifest

        verify_manifest(path)
    base = json.loads((path / _BASE_FILE).read_text()) if (path / _BASE_FILE).is_file() else None
    dequantize = dequantize or merge
    template = (base or {}).get("template", "auto")
    adapter_path = _adapter_path(path, adapter)

    if base is not None and base.get("base") and not _is_llava_dir(path):  # trained from model.base: rebuild that base, then the run's weights
        from vistune.model.checkpoints.base import load_base

        # "continue": the run's adapter/ is the continued one (it replaces the base's); "merge": base folded first
        model, processor, _ = load_base(
            base["base"], dtype=dtype, device_map=device_map, allow_pickle=bool(base.get("allow_pickle")),
            load_in_4bit=bool(base.get("load_in_4bit")) and not dequantize, adapter="merge"
            if base.get("base_adapter") == "merge" else "continue", vision=base.get("base_vision"),
        )
        if base.get("load_in_4bit") and not dequantize:
            keep_4bit_training_kernel(model)
        if base.get("weights") == "full":
            load_weights_into(model, path)
        elif (path / PROJECTOR_FILE).is_file():
            load_projector(model, path / PROJECTOR_FILE)
        if any((path / f).is_file() for f in _PROCESSOR_FILES):
            processor = load_processor(path)
    elif is_llava_format_dir(path):
        from vistune.model.checkpoints.llava_format import convert_llava

        model, processor, _ = convert_llava(path, dtype=dtype)
        template = _llava_format_template(path)
    elif _is_llava_dir(path):
        from vistune.model.anyres import model_class

        model = model_class(_llava_arch(path)).from_pretrained(
            str(path), dtype=torch_dtype(dtype), use_safetensors=True, device_map=device_map
        )
        processor = load_processor(path)
    elif base is not None and base.get("start"):  # a prefer run: its adapter sits on the Llava dir it started from
        quantized = bool(base.get("load_in_4bit"))
        model, processor = load_start(base["start"], dtype, load_in_4bit=quantized, device_map=device_map)
        if quantized and dequantize:
            dequantize_4bit(model, torch_dtype(dtype))
        if (path / PROJECTOR_FILE).is_file():
            load_projector(model, path / PROJECTOR_FILE)
    elif base is not None:
        model, processor = build_llava(
            _local_or_name(base, "vision"),
            _local_or_name(base, "llm"),
            dtype=dtype,
            device_map=device_map,
            load_in_4bit=bool(base.get("load_in_4bit")),
            vision_feature_layer=int(base.get("vision_feature_layer", -2)),
            chat_template=base.get("chat_template"),
            allow_pickle=bool(base.get("allow_pickle")),
            **{k: base[k] for k in ("arch", "image_grid_pinpoints", "vision_aspect_ratio") if k in base},
        )
        if dequantize and base.get("load_in_4bit"):
            dequantize_4bit(model, torch_dtype(dtype))
        elif base.get("load_in_4bit"):
            keep_4bit_training_kernel(model)
        if (path / VISION_TOWER_FILE).is_file():  # model.train_vision: full
            load_vision_tower_weights(model, path / VISION_TOWER_FILE)
        if (path / PROJECTOR_FILE).is_file():
            load_projector(model, path / PROJECTOR_FILE)
        elif base.get("stage") is not None:
            raise FileNotFoundError(f"{path}: base.json present but no {PROJECTOR_FILE}")
        if any((path / f).is_file() for f in _PROCESSOR_FILES):
            processor = load_processor(path)
    else:
        raise ValueError(
            f"{path}: holds neither a Llava config.json nor a vistune base.json: not a trained model directory"
        )

    repair_generation_config(llava_of(model).generation_config, f"{path}")
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=False)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model, processor, template


def load_start(path: str | Path, dtype: str = "float32", *, load_in_4bit: bool = False, device_map=None,
               attn_implementation: str | None = None):
    """(model, processor) a later stage starts from: a standard Llava directory (an export, a full run), with
    its LLM in 4-bit NF4 for QLoRA (vision tower, projector and lm_head stay in `dtype`, as `build_llava` leaves
    them), or a vistune run / checkpoint with its LoRA merged in (full precision only)."""
    from transformers import BitsAndBytesConfig

    from vistune.model.anyres import model_class
    from vistune.model.compose import torch_dtype

    path = Path(path)
    if not _is_llava_dir(path):
        if load_in_4bit:
            raise ValueError(f"{path}: a 4-bit (QLoRA) start must be a Llava directory; export the run first: "
                             f"vistune export --run {path} --out OUT --mode merged, then start from OUT")
        model, processor, _ = load_trained(path, dtype=dtype, merge=True, device_map=device_map)
        return model, processor
    extra = {}
    if load_in_4bit:
        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype(dtype), bnb_4bit_quant_storage=torch_dtype(dtype),
            llm_int8_skip_modules=["model.vision_tower", "model.multi_modal_projector", "lm_head"],
        )
    if attn_implementation:
        extra["attn_implementation"] = attn_implementation
    model = model_class(_llava_arch(path)).from_pretrained(str(path), dtype=torch_dtype(dtype), use_safetensors=True,
                                                           device_map=device_map, **extra)
    if load_in_4bit:
        keep_4bit_training_kernel(model)
    repair_generation_config(model.generation_config, f"{path}/generation_config.json")
    return model, load_processor(path)


def load_weights_into(model: torch.nn.Module, directory: Path) -> None:
    """Loads a checkpoint's trained weights (adapter + projector, or full weights) into a model being trained."""
    from safetensors.torch import load_file

    from vistune.model.checkpoints.projector import (
        PROJECTOR_FILE,
        VISION_TOWER_FILE,
        load_projector,
        load_vision_tower_weights,
    )

    adapter = directory / _ADAPTER_DIR
    if (adapter / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        peft_model = model
        while not hasattr(peft_model, "peft_config"):
            peft_model = peft_model.module
        result = set_peft_model_state_dict(peft_model, load_file(str(adapter / "adapter_model.safetensors")))
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing:
            raise RuntimeError(f"{adapter}: adapter lacks {missing[:3]} ...")
    elif _is_llava_dir(directory):
        llava = llava_of(model)
        index = directory / "model.safetensors.index.json"
        files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file()
                 else ["model.safetensors"])
        own = dict(llava.named_parameters())
        loaded = set()
        for name in files:
            state = load_file(str(directory / name))
            llava.load_state_dict(state, strict=False)
            loaded.update(state)
        missing = [k for k in own if k not in loaded and "lm_head" not in k]
        if missing:
            raise RuntimeError(f"{directory}: full weights lack {missing[:3]} ...")
    if (directory / PROJECTOR_FILE).is_file():
        load_projector(llava_of(model), directory / PROJECTOR_FILE)
    if (directory / VISION_TOWER_FILE).is_file():
        load_vision_tower_weights(model, directory / VISION_TOWER_FILE)


def keep_4bit_training_kernel(model: torch.nn.Module) -> None:
    """On CPU, bitsandbytes switches 4-bit layers in eval mode to a packed bf16 kernel that needs output widths
    divisible by its block size and computes differently from training; keep the kernel the model trained with."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def dequantize_4bit(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Replaces every bitsandbytes 4-bit linear layer by a plain nn.Linear holding its dequantised weight."""
    import bitsandbytes as bnb

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, bnb.nn.Linear4bit):
                weight = bnb.functional.dequantize_4bit(child.weight.data, child.weight.quant_state)
                linear = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                         device=weight.device, dtype=dtype)
                with torch.no_grad():
                    linear.weight.copy_(weight.to(dtype))
                    if child.bias is not None:
                        linear.bias.copy_(child.bias.to(dtype))
                setattr(module, name, linear)
    model.is_loaded_in_4bit = False
    model.hf_quantizer = None
    if hasattr(model, "quantization_method"):  # a model from_pretrained quantised (a QLoRA prefer start)
        del model.quantization_method
        model.is_quantized = False
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None and hasattr(config, "quantization_config"):
            del config.quantization_config
