"""vistune.model: compose LLaVA from pretrained parts, choose what trains, attach LoRA / QLoRA."""

from vistune.model.checkpoints.load import load_start, load_trained
from vistune.model.checkpoints.projector import (
    PROJECTOR_FILE,
    load_projector,
    projector_state_dict,
    save_projector,
)
from vistune.model.compose import build_llava, llava_of, num_image_tokens, torch_dtype
from vistune.model.lora import LoraSettings, attach_lora, llm_linear_names, lora_config
from vistune.model.policy import (
    METHODS,
    STAGES,
    apply_stage_policy,
    component_of,
    count_parameters,
    format_parameter_table,
)
from vistune.model.presets import LLM_PRESETS, MODEL_PRESETS, VISION_PRESETS, default_template
from vistune.model.tiny import TinySpec, ensure_tiny_parts, save_tiny_llm, save_tiny_vision

__all__ = [
    "LLM_PRESETS", "METHODS", "MODEL_PRESETS", "PROJECTOR_FILE", "STAGES", "VISION_PRESETS", "LoraSettings",
    "TinySpec", "apply_stage_policy", "attach_lora", "build_llava", "component_of", "count_parameters",
    "default_template", "ensure_tiny_parts", "format_parameter_table", "llava_of", "llm_linear_names", "load_projector",
    "load_start", "load_trained", "lora_config",
    "num_image_tokens", "projector_state_dict", "save_projector", "save_tiny_llm", "save_tiny_vision", "torch_dtype",
]
