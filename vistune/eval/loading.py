"""Loading a trained model for evaluation: `vistune.model.load_trained` when the model room provides it,
else a plain exported HF Llava directory (+ optional PEFT adapter) with the template named in base.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def load_model(path: str | Path, adapter: str | Path | None = None, dtype: str = "float32"):
    """(model, processor, template_name) for a run dir, checkpoint dir or exported HF Llava directory."""
    try:
        from vistune.model import load_trained  # the model room's loader (run dirs, checkpoints, exports)
    except ImportError:
        load_trained = None
    if load_trained is not None:
        return load_trained(str(path), adapter=str(adapter) if adapter else None, dtype=dtype)
    return load_exported(path, adapter, dtype)


def load_exported(path: str | Path, adapter: str | Path | None = None, dtype: str = "float32"):
    """A standard HF Llava directory; the template comes from base.json, else the processor's chat template."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from vistune.model import torch_dtype

    model = LlavaForConditionalGeneration.from_pretrained(str(path), dtype=torch_dtype(dtype))
    processor = AutoProcessor.from_pretrained(str(path))
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model, processor, guess_template(path, processor)


def guess_template(path: str | Path, processor) -> str:
    base = Path(path) / "base.json"
    if base.is_file():
        template = json.loads(base.read_text()).get("template")
        if template:
            return template
    if getattr(processor, "chat_template", None) or getattr(processor.tokenizer, "chat_template", None):
        return "auto"
    log.warning("%s names no template and has no chat template: using vicuna_v1", path)
    return "vicuna_v1"
