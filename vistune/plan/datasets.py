"""Size and length statistics of the training sets, which the planner turns into hours and peak batch memory.

The published LLaVA-1.5 sets are a table (stated estimates, see each `source`); any other LLaVA-format records
file on this machine is measured: record count, image share and text length at ~3.8 characters per token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CHARS_PER_TOKEN = 3.8  # Llama-family tokenizers on English chat text
TEMPLATE_TOKENS_PER_TURN = 6  # " USER:" / " ASSISTANT:" / "</s>" scaffolding per message
SYSTEM_TOKENS = 40  # vicuna_v1 system prompt + BOS


@dataclass(frozen=True)
class DatasetStats:
    name: str
    samples: int
    mean_text_tokens: float  # per sample, template scaffolding included, image tokens excluded
    image_fraction: float  # share of samples holding one image (the rest are text-only)
    longest_text_tokens: int | None  # longest sample's text tokens; None = some reach max_length (truncated)
    source: str  # where the numbers come from

    def mean_tokens(self, image_tokens: int) -> float:
        return self.mean_text_tokens + self.image_fraction * image_tokens

    def longest_tokens(self, image_tokens: int) -> int | None:
        return None if self.longest_text_tokens is None else self.longest_text_tokens + image_tokens


KNOWN_DATASETS: dict[str, DatasetStats] = {
    # LCS-558K (blip_laion_cc_sbu_558k.json): one BLIP caption per image, ~20 tokens, plus BOS and "\n" (plain).
    "lcs-558k": DatasetStats("lcs-558k", 558_128, 22, 1.0, 64, "LCS-558K: BLIP captions ~20 tokens (estimate)"),
    # llava_v1_5_mix665k.json: the published Parquet copy holds ~768 MB of conversation text for 665,298 records
    # (~1,050 characters, ~275 tokens each) + ~55 tokens of template; ~40K ShareGPT records are text-only; the
    # longest conversations are truncated at max_length.
    "llava-mix665k": DatasetStats(
        "llava-mix665k", 665_298, 330, 0.94, None, "mix665k: ~330 text tokens/record, 94% with an image (estimate)"
    ),
    # openbmb/RLAIF-V-Dataset: 83,132 preference pairs (image, question, chosen, rejected), mostly detailed
    # descriptions; per sequence: a ~20-token question + a ~150-token reply + template (estimate).
    "rlaif-v": DatasetStats("rlaif-v", 83_132, 220, 1.0, None, "RLAIF-V: ~220 text tokens per reply sequence, "
                            "one image per pair (estimate)"),
    # configs/llava-1.5-7b/rl_lora.yaml's prompts: 20K GQA balanced-train questions written as {image, question,
    # answer} rows (vistune's recipe choice); per prompt: a ~15-token question + the vicuna_v1 system prompt and
    # scaffolding (estimate); the completions rl generates are counted by vistune.plan.rollouts.
    "gqa-rl-20k": DatasetStats("gqa-rl-20k", 20_000, 60, 1.0, 120, "20K GQA questions as rl prompts: ~60 text "
                               "tokens with the template, one image each (estimate)"),
    # LLaVA-NeXT-Data (lmms-lab/LLaVA-NeXT-Data): 779K records, mix665k-like conversations plus high-resolution
    # document / chart data; text length assumed as mix665k's.
    "llava-next-779k": DatasetStats(
        "llava-next-779k", 779_289, 330, 0.95, None, "LLaVA-NeXT-Data: 779K records, text as mix665k (estimate)"
    ),
    # LLaVA-OneVision single-image stage: 3.2M records (OneVision paper); text length assumed as mix665k's.
    "llava-ov-si-3.2m": DatasetStats(
        "llava-ov-si-3.2m", 3_200_000, 330, 1.0, None, "OneVision single-image: 3.2M records (estimate)"
    ),
}
_FILE_NAMES = {"558k": "lcs-558k", "665k": "llava-mix665k", "779k": "llava-next-779k", "next_data": "llava-next-779k",
               "ov_si": "llava-ov-si-3.2m", "3.2m": "llava-ov-si-3.2m", "rlaif": "rlaif-v",
               "gqa_rl": "gqa-rl-20k"}


def dataset_stats(path: str) -> DatasetStats:
    """Stats for a recipe's `data.path`: a known published set by name, else measured from the local file."""
    name = Path(path).name.lower()
    if path in KNOWN_DATASETS:
        return KNOWN_DATASETS[path]
    for marker, known in _FILE_NAMES.items():
        if marker in name:
            return KNOWN_DATASETS[known]
    if Path(path).is_file():
        return measure_records(Path(path))
    raise ValueError(
        f"data.path {path!r} is neither a published set ({', '.join(KNOWN_DATASETS)}) nor a file here: "
        "give --samples and --mean-text-tokens"
    )


def measure_records(path: Path) -> DatasetStats:
    """Counts records, images and characters of a LLaVA JSON / JSONL records file."""
    text = path.read_text()
    records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
    if not records:
        raise ValueError(f"{path} holds no records")
    lengths, images = [], 0
    for record in records:
        turns = record.get("conversations") or record.get("messages") or []
        chars = sum(len(str(t.get("value", t.get("content", "")))) for t in turns)
        if "chosen" in record:  # a preference pair: one sequence = the prompt + a mean reply
            prompt = record.get("prompt", record.get("question"))
            chars += len(str(prompt or "")) + (len(str(record["chosen"])) + len(str(record.get("rejected", "")))) / 2
            turns = [*turns, {}] + ([{}] if prompt else [])
        lengths.append(chars / CHARS_PER_TOKEN + TEMPLATE_TOKENS_PER_TURN * len(turns) + SYSTEM_TOKENS)
        images += bool(record.get("image") or record.get("images"))
    return DatasetStats(
        path.name, len(records), sum(lengths) / len(lengths), images / len(records), int(max(lengths)) + 1,
        f"measured from {path.name} at ~{CHARS_PER_TOKEN} characters per token",
    )
