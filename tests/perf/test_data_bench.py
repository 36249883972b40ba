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


_PROBE = """
import json, mmap, os, sys
import numpy as np
from vistune.bench.data import memory

path = sys.argv[1]
start = memory(os.getpid())
with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
    view = np.frombuffer(mapped, dtype=np.uint8)
    assert int(view[::4096].astype(np.int64).sum()) >= 0  # touches every page
    mapped_now = memory(os.getpid())
    del view
owned = np.ones(64 << 20, dtype=np.uint8)
assert owned.sum() == 64 << 20
print(json.dumps({"start": start, "mapped": mapped_now, "owned": memory(os.getpid())}))
"""


def test_memory_counts_what_a_process_adds_not_the_mapped_file_it_reads(tmp_path):
    """`anon` grows with an array the process allocates, not with the pages of a memory-mapped file it reads (page
    cache any process mapping the file shares); RSS counts both. Measured in a fresh process: inside pytest, memory
    freed by earlier tests may be handed back out without growing the process."""
    import os
    import subprocess
    import sys

    path = tmp_path / "cache.bin"
    path.write_bytes(os.urandom(64 << 20))
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["mapped"]["rss"] - m["start"]["rss"] > 48 and m["mapped"]["anon"] - m["start"]["anon"] < 16
    assert m["owned"]["anon"] - m["mapped"]["anon"] > 48
