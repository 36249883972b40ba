"""The quickstart's and the tests' tiny model parts: built from configs in seconds, pretrained on a CPU in minutes."""

from vistune.model.tiny.parts import TinySpec, ensure_tiny_parts, save_tiny_llm, save_tiny_vision
from vistune.model.tiny.pretrain import PretrainSettings, pretrain_tiny_clip, pretrain_tiny_llm

__all__ = ["PretrainSettings", "TinySpec", "ensure_tiny_parts", "pretrain_tiny_clip", "pretrain_tiny_llm",
           "save_tiny_llm", "save_tiny_vision"]
