"""The benchmark's tiny-but-not-trivial workload: model parts (an LLM of ~29M parameters) and a variable-length mix.

The mix is the synthetic shapes set plus long multi-turn records (many questions, paragraph answers), so batch
lengths vary the way LLaVA's mix665k does; `prepare_bench(out)` writes everything the configs/bench recipes read.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from vistune.model.tiny import TinySpec

# 64 image tokens (64 px, 8 px patches); Llama of 4 x 7.1M decoder weights (MHA, like Llama-2 / Vicuna).
BENCH_SPEC = TinySpec(image_size=64, patch_size=8, vision_hidden=256, vision_layers=4, llm_hidden=768,
                      llm_layers=4, llm_heads=12, llm_kv_heads=12, llm_intermediate=2048, vocab_size=512,
                      max_positions=2048)

_SENTENCES = [
    "The shape sits on a white canvas and nothing else is drawn around it.",
    "Its colour is bright and easy to tell apart from the background.",
    "There is a small amount of jitter in where each shape is placed.",
    "Counting the shapes is simple because they never overlap each other.",
    "The picture is small, so fine details are not visible at all.",
    "A careful look shows straight edges on the square and the triangle.",
]


def write_mixed_records(root: str | Path, n: int = 600, long_records: int = 150, seed: int = 0,
                        image_size: int = 64, max_turns: int = 6) -> Path:
    """Writes the synthetic set under `root` plus `long_records` long multi-turn ones; returns mixed.json."""
    from vistune.data_prep import synthesize

    root = Path(root)
    paths = synthesize(root, n=n, seed=seed, image_size=image_size, n_heldout=0)
    records = json.loads(paths["instruct"].read_text())
    with_image = [r for r in records if "image" in r]
    rng = random.Random(seed + 1)
    for i in range(long_records):
        base = rng.choice(with_image)
        turns = []
        for k in range(rng.randint(2, max_turns)):
            question = rng.choice(base["conversations"][::2])["value"].replace("<image>\n", "")
            answer = " ".join(rng.choice(_SENTENCES) for _ in range(rng.randint(1, 2)))
            turns += [{"from": "human", "value": ("<image>\n" if k == 0 else "") + question},
                      {"from": "gpt", "value": answer}]
        records.append({"id": f"long-{i}", "image": base["image"], "conversations": turns})
    rng.shuffle(records)
    out = root / "mixed.json"
    out.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return out


def prepare_bench(out: str | Path, n: int = 600, long_records: int = 150, seed: int = 0) -> dict[str, Path]:
    """Builds bench parts (vision/, llm/) and data (data/align.json, data/mixed.json) under `out`, once."""
    from vistune.model.tiny import save_tiny_llm, save_tiny_vision

    out = Path(out)
    paths = {"vision": out / "vision", "llm": out / "llm", "data": out / "data"}
    if not (paths["vision"] / "config.json").exists():
        save_tiny_vision(paths["vision"], BENCH_SPEC)
    if not (paths["llm"] / "config.json").exists():
        save_tiny_llm(paths["llm"], BENCH_SPEC, extra_text=_SENTENCES)
    if not (paths["data"] / "mixed.json").exists():
        write_mixed_records(paths["data"], n=n, long_records=long_records, seed=seed,
                            image_size=BENCH_SPEC.image_size)
    return paths


if __name__ == "__main__":  # python -m vistune.bench.workload [OUT]: what configs/bench/*.yaml read
    import sys

    for name, path in prepare_bench(sys.argv[1] if len(sys.argv) > 1 else "runs/bench").items():
        print(f"{name:7s} {path}")
