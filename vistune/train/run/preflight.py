"""Checks of the machine against a run's config, before any weight is loaded.

Environment surprises (bf16 asked for on hardware without it, QLoRA without a bitsandbytes backend,
flash-attention not installed) must fail a run within seconds with a message that says what to change,
not minutes into it. `vistune env` prints the same facts.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

_PACKAGES = ("torch", "transformers", "peft", "accelerate", "deepspeed", "bitsandbytes", "datasets", "vistune")
# bf16 slower than this fraction of fp32 means the CPU emulates it: training in bf16 would crawl.
BF16_MIN_SPEED_RATIO = 0.25


@dataclass
class Problem:
    what: str  # what the config asks for that this machine lacks
    fix: str  # the change that makes the run start

    def __str__(self) -> str:
        return f"{self.what}\n    fix: {self.fix}"


class PreflightError(RuntimeError):
    """The config asks for something this machine lacks."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("this machine cannot run the config as written:\n  - " + "\n  - ".join(map(str, problems)))


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _matmul_seconds(a: torch.Tensor) -> float:
    start = time.perf_counter()
    a @ a
    return time.perf_counter() - start


@functools.lru_cache(maxsize=1)
def cpu_bf16_speed_ratio(n: int = 384, rounds: int = 7) -> float:
    """bf16 matmul throughput as a fraction of fp32 on this CPU (measured: CPU flags can claim bf16
    while the math library still emulates it hundreds of times slower).

    Both dtypes are warmed up (the first bf16 matmul compiles its kernel) and timed in alternation, best of
    `rounds`: on a shared machine a busy neighbour only ever slows a timing, so the best ones are the honest
    ones. Measured once per process, so `vistune env` and the start-up check give the same answer."""
    a32 = torch.randn(n, n)
    a16 = a32.to(torch.bfloat16)
    _matmul_seconds(a32), _matmul_seconds(a16)
    best32 = best16 = float("inf")
    for _ in range(rounds):
        best32 = min(best32, _matmul_seconds(a32))
        best16 = min(best16, _matmul_seconds(a16))
    return best32 / max(best16, 1e-9)


def bf16_supported(min_speed_ratio: float = BF16_MIN_SPEED_RATIO) -> bool:
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_bf16_speed_ratio() >= min_speed_ratio


def tf32_supported() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def flash_attention_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def liger_available() -> bool:
    """Liger's Triton kernels run on CUDA only."""
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def bitsandbytes_backend() -> str | None:
    """The device bitsandbytes can quantise on here ('cuda' / 'cpu' / ...), or None when it cannot."""
    try:
        import bitsandbytes.functional as bnbf
    except Exception:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        bnbf.quantize_4bit(torch.randn(64, 64, device=device), quant_type="nf4")
    except Exception:
        return None
    return device


def devices() -> list[str]:
    if torch.cuda.is_available():
        return [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return [f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"]


def environment_report() -> dict:
    """Everything `vistune env` prints: versions, devices, precision and kernel support."""
    return {
        "python": platform.python_version(),
        "packages": package_versions(),
        "devices": devices(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "bf16": bf16_supported(),
        "cpu_bf16_speed_ratio": None if torch.cuda.is_available() else round(cpu_bf16_speed_ratio(), 4),
        "tf32": tf32_supported(),
        "attention": "flash_attention_2" if flash_attention_available() else "sdpa",
        "flash_attn_installed": importlib.util.find_spec("flash_attn") is not None,
        "liger_kernel_installed": importlib.util.find_spec("liger_kernel") is not None,
        "bitsandbytes_backend": bitsandbytes_backend(),
    }


def check_config(config, bf16_min_speed_ratio: float = BF16_MIN_SPEED_RATIO) -> list[Problem]:
    """What `config` (a vistune.train RunConfig) asks for that this machine lacks; empty when it can run."""
    problems = []
    wants_bf16 = config.optim.bf16 or str(config.model.dtype) in ("bfloat16", "bf16")
    if wants_bf16 and not bf16_supported(bf16_min_speed_ratio):
        where = "this CPU emulates bf16" if not torch.cuda.is_available() else "this GPU has no bf16"
        problems.append(Problem(f"bf16 requested but {where}", "set optim.bf16=false model.dtype=float32"))
    if config.optim.tf32 and not tf32_supported():
        problems.append(Problem("tf32 requested but there is no Ampere-or-newer GPU", "set optim.tf32=false"))
    if config.stage != "align" and config.method == "qlora" and bitsandbytes_backend() is None:
        problems.append(
            Problem("QLoRA requested but bitsandbytes cannot quantise on this machine", "pip install bitsandbytes, or method=lora")
        )
    if config.model.attn_implementation == "flash_attention_2" and not flash_attention_available():
        problems.append(
            Problem(
                "flash_attention_2 requested but flash-attn is not installed (or there is no GPU)",
                "pip install flash-attn, or set model.attn_implementation=sdpa",
            )
        )
    start = config.start
    if start and not Path(start).is_dir():
        problems.append(Problem(f"{config.stage}'s start {start!r} is not a run, checkpoint or export directory",
                                "train stage instruct first (or export it), or fix the path"))
    if (config.optim.liger is True or config.optim.cross_entropy == "liger") and not liger_available():
        problems.append(Problem("Liger kernels requested but liger-kernel is not installed (or there is no GPU)",
                                "pip install 'vistune[liger]' on a CUDA machine, or set optim.liger=auto "
                                "optim.cross_entropy=chunked"))
    if config.optim.torch_compile and not torch.cuda.is_available() and shutil.which("c++") is None:
        problems.append(Problem("torch_compile on CPU needs a C++ compiler (inductor) and none is on PATH",
                                "install g++, or set optim.torch_compile=false"))
    if config.deepspeed and importlib.util.find_spec("deepspeed") is None:
        problems.append(Problem("a DeepSpeed config is set but deepspeed is not installed", "pip install deepspeed"))
    return problems


def preflight(config) -> None:
    """Raises PreflightError naming every problem at once."""
    problems = check_config(config)
    if problems:
        raise PreflightError(problems)
