"""`vistune export`: a trained run as standard HF artifacts that load without vistune.

merged:    one Llava (or LlavaNext / LlavaOnevision) directory, LoRA folded into the LLM, projector baked in.
base+lora: the base Llava directory with the trained projector baked in, plus `adapter/` (LoRA weights only)
           inside it: the layout vLLM serves with `--enable-lora`.
A QLoRA run is exported on its dequantised base (the weights it was trained against), never re-quantised.
Weights are written in the llava-hf hub layout and the config describes them as written (hub_layout.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

MODES = ("merged", "base+lora")
# The vLLM release vistune's CI serves every kind of export with (scripts/setup_serve.sh installs it).
VLLM_TESTED = "0.32.0"


def export(run: str | Path, out: str | Path, mode: str = "merged", dtype: str = "bfloat16") -> Path:
    from peft import PeftModel

    from vistune.model.checkpoints.load import load_trained
    from vistune.model.checkpoints.manifest import write_manifest
    from vistune.model.compose import torch_dtype
    from vistune.train.saving.hub_layout import clean_config, write_hub_layout

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    run, out = Path(run), Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    model, processor, template = load_trained(run, dtype="float32", dequantize=True)
    has_adapter = isinstance(model, PeftModel)
    if has_adapter and mode == "merged":
        llava = model.merge_and_unload()
    elif has_adapter:
        llava = model.unload()
    else:
        llava = model
    llava = llava.to(torch_dtype(dtype))
    llava.config.use_cache = True
    llava.config.text_config.use_cache = True
    out.mkdir(parents=True, exist_ok=True)
    llava.save_pretrained(str(out))
    write_hub_layout(out)
    dropped = clean_config(out)
    processor.save_pretrained(str(out))
    if has_adapter and mode == "base+lora":
        shutil.copytree(run / "adapter", out / "adapter")
        cfg_path = out / "adapter" / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = ".."
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    base = json.loads((run / "base.json").read_text()) if (run / "base.json").is_file() else {}
    info = {**base, "exported_from": str(run.resolve()), "export_mode": mode, "export_dtype": dtype,
            "weights": "full", "load_in_4bit": False, "template": template,
            "dropped_config_keys": dropped}
    (out / "base.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.md").write_text(model_card(run, out, mode, info, has_adapter, type(llava).__name__))
    write_manifest(out, extra={"base": info})
    return out


def model_card(run: Path, out: Path, mode: str, info: dict, has_adapter: bool,
               class_name: str = "LlavaForConditionalGeneration") -> str:
    config = {}
    if (run / "config.yaml").is_file():
        config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    optim, lora, data = config.get("optim", {}), config.get("lora", {}), config.get("data", {})
    method = info.get("method", "?")
    trained = (f"LoRA r {lora.get('r')}, alpha {lora.get('alpha')}, dropout {lora.get('dropout')}"
               if method in ("lora", "qlora") else "full fine-tuning of the LLM")
    lines = [
        "---", "library_name: transformers", "pipeline_tag: image-text-to-text", "tags: [llava, vistune]", "---", "",
        f"# {out.name}", "",
        f"A LLaVA-style vision-language model (`{class_name}`) trained with vistune.", "",
        "## How it was trained", "",
        f"- vision tower: `{info.get('vision')}`; LLM: `{info.get('llm')}`; conversation template: `{info.get('template')}`",
        f"- last stage: `{info.get('stage')}`, method `{method}` ({trained}); projector: 2-layer GELU MLP, trained",
        f"- data: `{data.get('path', '?')}`; lr {optim.get('lr')}, projector lr {optim.get('projector_lr')}, "
        f"{optim.get('scheduler')} schedule, warmup {optim.get('warmup_ratio')}, epochs {optim.get('epochs')}, "
        f"max_steps {optim.get('max_steps')}; seed {config.get('seed')}",
        f"- exported from `{info.get('exported_from')}` as `{mode}` in {info.get('export_dtype')}"
        + (" (QLoRA: merged into the dequantised 4-bit base it was trained against)" if method == "qlora" else ""),
        "", "## Load", "", "```python", f"from transformers import AutoProcessor, {class_name}",
        f'model = {class_name}.from_pretrained("{out}")',
        f'processor = AutoProcessor.from_pretrained("{out}")',
    ]
    if has_adapter and mode == "base+lora":
        lines += ["from peft import PeftModel", f'model = PeftModel.from_pretrained(model, "{out}/adapter")']
    lines += ["```", "", "## Serve", "", "```bash"]
    if has_adapter and mode == "base+lora":
        lines += [f"vllm serve {out} --enable-lora --lora-modules vistune={out}/adapter --max-lora-rank "
                  f"{lora.get('r', 128)}"]
    else:
        lines += [f"vllm serve {out}"]
    lines += ["```", "", "The adapter (if any) holds LoRA weights only; the trained projector is baked into the base "
              "weights, since vLLM refuses adapters with `modules_to_save`. `vistune serve` starts the same server "
              "with these flags filled in.", "", *verified_lines(info)]
    return "\n".join(lines)


def verified_lines(info: dict) -> list[str]:
    """The card's "Verified" section: what vistune checks about exports like this one, with which versions."""
    import transformers

    dropped = ", ".join(f"`{k}`" for k in info.get("dropped_config_keys", [])) or "none"
    return [
        "## Verified", "",
        "- weights in the llava-hf hub layout (`language_model.model.*`, `language_model.lm_head.*`, "
        "`vision_tower.vision_model.*`, `multi_modal_projector.*`, `image_newline`); config keys of the source "
        f"weights dropped: {dropped}",
        f"- written with transformers {transformers.__version__}; vistune's tests load exports of this kind in "
        "plain transformers / PEFT in a fresh process and compare logits with the trained model's",
        f"- vistune's CI serves merged and base+lora exports with vLLM {VLLM_TESTED} (CPU build, "
        "`scripts/setup_serve.sh`, whose `vllm` program cannot start: use `vistune serve`) and checks that its greedy "
        "answers through the chat template equal `vistune eval run`'s (transformers)", "",
    ]
