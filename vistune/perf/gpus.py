"""GPUs the planner knows: memory and dense bf16 tensor peak, so hours and fit can be computed before renting.

Peaks are dense (no 2:4 sparsity) bf16 with fp32 accumulation, from NVIDIA's datasheets and architecture
whitepapers (A100, H100, H200, L40S, L4 datasheets; GA102 whitepaper for RTX 3090 / A6000 / A10; Ada whitepaper
for RTX 4090, whose bf16-with-fp32-accumulate rate is half its fp16-accumulate rate). Memory is what
`nvidia-smi` reports as total, in GiB.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gib: float  # total device memory (nvidia-smi)
    bf16_tflops: float  # dense bf16 tensor-core peak, fp32 accumulate
    interconnect: str  # nvlink / pcie: ZeRO-3 traffic is far slower over PCIe
    note: str = ""


GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU("a100-80g", 80.0, 312, "nvlink", "A100 SXM 80 GB"),
        GPU("a100-40g", 40.0, 312, "nvlink", "A100 SXM 40 GB"),
        GPU("h100-80g", 79.6, 989, "nvlink", "H100 SXM 80 GB"),
        GPU("h100-pcie", 79.6, 756, "pcie", "H100 PCIe 80 GB"),
        GPU("h200", 140.4, 989, "nvlink", "H200 SXM 141 GB"),
        GPU("l40s", 45.0, 362, "pcie", "L40S 48 GB"),
        GPU("l4", 22.5, 121, "pcie", "L4 24 GB"),
        GPU("a6000", 48.0, 155, "pcie", "RTX A6000 48 GB"),
        GPU("a10", 22.5, 125, "pcie", "A10 24 GB"),
        GPU("rtx4090", 24.0, 165, "pcie", "GeForce RTX 4090 24 GB"),
        GPU("rtx3090", 24.0, 71, "pcie", "GeForce RTX 3090 24 GB"),
    )
}


def get_gpu(name: str) -> GPU:
    key = name.lower().replace("_", "-")
    if key in GPUS:
        return GPUS[key]
    close = difflib.get_close_matches(key, list(GPUS), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown GPU {name!r}{hint}; known: {', '.join(GPUS)}")
