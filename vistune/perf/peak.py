"""The hardware peak MFU is measured against: a measured dense matmul rate on CPU, the datasheet on a known GPU.

The CPU peak is the best of several timed square matmuls (best, not mean: a shared machine only ever slows a
run down), so a benchmark's MFU is against what this machine's BLAS can really reach, never an optimistic number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Peak:
    flops_per_s: float  # dense matmul FLOP/s of one device
    source: str  # how it was obtained ("measured fp32 matmul n=2048, best of 8", "datasheet: a100-80g bf16")


def measure_matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 8,
                        device: str = "cpu") -> Peak:
    """Best rate of `repeats` timed [n x n] @ [n x n] matmuls (after one warm-up)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    name = str(dtype).replace("torch.", "")
    return Peak(2 * n**3 / best, f"measured {name} matmul n={n}, best of {repeats}")


def device_peak(dtype: torch.dtype = torch.float32, quick: bool = False) -> Peak:
    """This device's peak: a known GPU's datasheet bf16 rate, else a measured matmul in `dtype` (`quick`: a
    smaller, shorter measurement for training logs)."""
    if torch.cuda.is_available():
        from vistune.perf.gpus import GPUS

        name = torch.cuda.get_device_name().lower().replace(" ", "")
        for key, gpu in GPUS.items():
            if key.split("-")[0] in name:
                return Peak(gpu.bf16_tflops * 1e12, f"datasheet: {key} bf16")
        return measure_matmul_peak(dtype, n=8192, device="cuda")
    return measure_matmul_peak(dtype, n=1024, repeats=4) if quick else measure_matmul_peak(dtype)
