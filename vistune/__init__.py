"""vistune: LLaVA-style visual instruction tuning, HF-native end to end.

Rooms: `vistune.model` (compose / freeze / LoRA), `vistune.data_prep` (records, templates, images),
`vistune.train` (staged training under HF Trainer + DeepSpeed), `vistune.eval` (generation, benchmarks).
"""

__version__ = "0.1.0"

IMAGE_TOKEN = "<image>"
IGNORE_INDEX = -100
