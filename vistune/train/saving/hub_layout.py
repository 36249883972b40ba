"""An export's files in the llava-hf hub layout, the one layout every consumer (transformers, PEFT, vLLM) reads.

transformers 5.x saves a Llava model with its own reverse mapping (`conversion_mapping.py`): `language_model.model.*`,
`language_model.lm_head.*`, `multi_modal_projector.*`, `image_newline`, exactly as on the hub, but the tower as
`vision_tower.embeddings.*`. It drops the tower's `vision_model.` prefix on load (a `PrefixChange` of
CLIPVisionModel / SiglipVisionModel) and puts it back on save only for a model that was itself loaded from the hub
layout. vLLM's CLIP / SigLIP loaders read `vision_tower.vision_model.*` only, so an export puts the prefix back here;
transformers loads both spellings. docs/deploy.md has the whole table.
"""

from __future__ import annotations

import json
from pathlib import Path

TOWER = "vision_tower."
HUB_TOWER = "vision_tower.vision_model."
# transformers 5.x's in-memory names -> the hub's. A model loaded from weights already in these in-memory names (an
# imported LLaVA checkpoint, an earlier export) is saved under them unchanged, so an export renames them here too.
MEMORY_TO_HUB = (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                 ("model.vision_tower.", TOWER), ("model.multi_modal_projector.", "multi_modal_projector."),
                 ("model.image_newline", "image_newline"))
# Keys of a config (top level, text_config, vision_config) that describe how the *source* weights were stored, not
# the weights an export writes: a GGUF file's or a 4-bit base's quantisation, dequantised before export.
SOURCE_ONLY_KEYS = ("quantization_config", "gguf_file")


def hub_name(key: str) -> str:
    """The hub-layout name of one saved weight."""
    for memory, hub in MEMORY_TO_HUB:
        if key.startswith(memory):
            key = hub + key[len(memory):]
            break
    if key.startswith(TOWER) and not key.startswith(HUB_TOWER):
        return HUB_TOWER + key[len(TOWER):]
    return key


def write_hub_layout(out: Path) -> int:
    """Renames the tower's weights in every safetensors file (and the shard index) of `out`; returns how many."""
    from safetensors.torch import load_file, save_file

    renamed = 0
    for path in sorted(out.glob("*.safetensors")):
        tensors = load_file(str(path))
        names = {key: hub_name(key) for key in tensors}
        changed = sum(key != new for key, new in names.items())
        if changed:
            save_file({names[key]: t for key, t in tensors.items()}, str(path), metadata={"format": "pt"})
            renamed += changed
    index = out / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {hub_name(k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2) + "\n")
    return renamed


def clean_config(out: Path) -> list[str]:
    """Drops source-only keys (SOURCE_ONLY_KEYS) from config.json; returns the dotted names dropped."""
    path = out / "config.json"
    config = json.loads(path.read_text())
    dropped = []
    for part, section in [("", config), ("text_config.", config.get("text_config")),
                          ("vision_config.", config.get("vision_config"))]:
        for key in SOURCE_ONLY_KEYS:
            if isinstance(section, dict) and key in section:
                section.pop(key)
                dropped.append(part + key)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return dropped
