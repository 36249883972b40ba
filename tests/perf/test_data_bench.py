"""The data benchmark's synthetic file has LLaVA-665k's shape (the full-size run is documented, not run in CI)."""

from __future__ import annotations

import json

from vistune.bench.data import write_llava_like


def test_the_synthetic_file_is_llava_665k_shaped(tmp_path):
    path = write_llava_like(tmp_path, n=3000, n_images=50, seed=1)
    records = json.loads(path.read_text())
    assert len(records) == 3000 and len({r["id"] for r in records}) == 3000
    text_only = [r for r in records if "image" not in r]
    assert 0.04 < len(text_only) / len(records) < 0.08  # ~6% text-only, as mix665k's ShareGPT share
    turns = [len(r["conversations"]) // 2 for r in records]
    assert min(turns) == 1 and max(turns) == 8
    assert all("<image>" not in c["value"] for r in text_only for c in r["conversations"])
    assert all(r["conversations"][0]["value"].startswith("<image>\n") for r in records if "image" in r)
    assert len({r["image"] for r in records if "image" in r}) <= 50
    chars = sum(len(c["value"]) for r in records for c in r["conversations"]) / len(records)
    assert 700 < chars < 1400  # mix665k: ~1,050 characters of conversation per record
