"""The `auto` switches of a run made concrete at build time: packing, gradient checkpointing and Liger kernels.

Defaults are the fast path where it is correct: packing when the attention keeps samples apart, checkpointing only
when the memory model says the step would not fit without it, Liger's kernels where they are installed on a GPU.
An explicit true / false always wins. Each decision is printed at start and written at the top of config.yaml.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vistune.train.run.config import AUTO, ConfigError, RunConfig
from vistune.train.run.preflight import liger_available

# Implementations whose packed-row cost is per sample (Σnᵢ²): flash varlen and vistune's segment path.
PER_SAMPLE_ATTENTION = ("flash_attention_2", "flash_attention_3", "vistune_packed")
# Implementations that keep packed samples apart through transformers' block-diagonal mask (position_ids, no
# cache), at the cost of one (Σnᵢ)² attention per row: correct (tests/perf), but packing is not the fast path.
MASKED_ATTENTION = ("sdpa", "eager", "flex_attention")
# LLM model types Liger patches (RMSNorm, SwiGLU, RoPE) inside a Llava model.
LIGER_LLMS = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "granite", "olmo2")


@dataclass
class Decision:
    key: str  # dotted config key, e.g. optim.gradient_checkpointing
    value: bool  # what auto became
    reason: str  # why, in one line

    def line(self) -> str:
        return f"{self.key}: auto -> {str(self.value).lower()} ({self.reason})"


def resolve_packing(config: RunConfig) -> Decision | None:
    """data.packing=auto -> on unless model.attn_implementation names one without a per-sample kernel."""
    impl = config.model.attn_implementation
    if config.data.packing is True:
        if impl and impl not in PER_SAMPLE_ATTENTION + MASKED_ATTENTION:
            raise ConfigError(f"data.packing=true: model.attn_implementation={impl} is not known to keep packed "
                              "samples apart; leave model.attn_implementation unset, or set data.packing=false")
        return None
    if config.data.packing is False:
        return None
    if impl is None or impl in PER_SAMPLE_ATTENTION:
        from vistune.model.segment_attention import packed_attention_implementation

        config.data.packing = True
        return Decision("data.packing", True, f"{impl or packed_attention_implementation()} attention keeps packed "
                        "samples apart at per-sample cost")
    config.data.packing = False
    return Decision("data.packing", False, f"model.attn_implementation={impl} has no per-sample kernel; leave it "
                    "unset (flash-attention varlen / vistune_packed) to pack")


def memory_budget() -> tuple[float, str]:
    """(bytes one process may use, what they are): the GPU's memory, or on CPU the host RAM per local process."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return float(props.total_memory), props.name
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return total / local, "host RAM" + (f" / {local} processes" if local > 1 else "")


def worst_batch(lengths: Sequence[int], batch_size: int, packed: bool) -> tuple[int, int]:
    """(tokens per row, rows) of the largest micro-batch the data can produce: the longest samples together."""
    longest = np.sort(np.abs(np.asarray(lengths, dtype=np.int64)))[::-1][:batch_size].tolist() or [1]
    return (sum(longest), 1) if packed else (longest[0], len(longest))


def logit_fraction(config: RunConfig, dataset) -> float:
    """Share of the worst micro-batch's positions that reach lm_head: all of them (full CE, padded rows keep the
    union of their supervised columns), or with chunked CE on packed rows the supervised ones of its samples."""
    tokenized = getattr(dataset, "tokenized", None)  # VisualInstructDataset's records, when it has them
    if config.optim.cross_entropy != "chunked" or config.data.packing is not True or not tokenized:
        return 1.0
    order = sorted(range(len(tokenized)), key=lambda i: -len(tokenized[i].input_ids))
    worst = order[:config.optim.per_device_batch_size]
    return sum(tokenized[i].num_supervised for i in worst) / max(1, sum(len(tokenized[i].input_ids) for i in worst))


def resolve_checkpointing(config: RunConfig, model, dataset, budget: tuple[float, str] | None = None) -> Decision | None:
    """optim.gradient_checkpointing=auto -> off when the memory model (vistune.perf.memory) puts the worst micro-batch
    of this data within 80% of the device's memory without it, on otherwise."""
    if config.optim.gradient_checkpointing != AUTO:
        return None
    budget_bytes, where = budget or memory_budget()
    decision, (rows, tokens) = checkpointing_estimate(config, model, dataset, budget_bytes)
    config.optim.gradient_checkpointing = decision.needed
    if decision.needed and config.optim.checkpoint_layers == 0 and decision.layers < decision.total_layers:
        config.optim.checkpoint_layers = decision.layers
    return Decision("optim.gradient_checkpointing", decision.needed,
                    f"{decision.reason()} on {where}; worst micro-batch {rows} x {tokens} tokens")


def checkpointing_estimate(config: RunConfig, model, dataset, budget_bytes: float):
    """(vistune.perf.memory.CheckpointingDecision, (rows, tokens) of the worst micro-batch) for this run's step."""
    from vistune.model.compose import llava_of, torch_dtype
    from vistune.perf.arch import llava_arch_from_config
    from vistune.perf.flops import Workload
    from vistune.perf.memory import Engine, decide_checkpointing, deepspeed_settings

    llava = llava_of(model)
    arch = llava_arch_from_config(llava.config)
    work = Workload.of_run(config, gradient_checkpointing=True)
    engine = Engine(**deepspeed_settings(config.deepspeed), world_size=int(os.environ.get("WORLD_SIZE", 1)),
                    dtype_bytes=torch_dtype(config.model.dtype).itemsize,
                    attention="eager" if config.model.attn_implementation == "eager" else "sdpa",
                    device="cuda" if torch.cuda.is_available() else "cpu")
    tokens, rows = worst_batch(dataset.lengths, config.optim.per_device_batch_size, bool(config.data.packing))
    images = min(config.optim.per_device_batch_size, len(dataset.lengths))
    decision = decide_checkpointing(arch, work, engine, tokens, rows, budget_bytes, images=images,
                                    lora_dropout=config.lora.dropout, logit_fraction=logit_fraction(config, dataset))
    return decision, (rows, tokens)


def resolve_liger(config: RunConfig, model) -> Decision | None:
    """optim.liger=auto -> on with CUDA, liger-kernel installed and a Llama-family LLM; off otherwise."""
    if config.optim.liger != AUTO:
        return None
    from vistune.model.compose import llava_of

    llm_type = llava_of(model).config.text_config.model_type
    if not liger_available():
        config.optim.liger = False
        why = "no GPU" if not torch.cuda.is_available() else "liger-kernel is not installed (pip install vistune[liger])"
        return Decision("optim.liger", False, why)
    if config.stage == "instruct" and config.method == "qlora":  # 4-bit linears + fp32 norms: not checked yet
        config.optim.liger = False
        return Decision("optim.liger", False, "QLoRA: Liger over 4-bit weights is not checked yet; set true to try")
    config.optim.liger = llm_type in LIGER_LLMS
    return Decision("optim.liger", config.optim.liger, f"LLM type {llm_type}" + ("" if config.optim.liger else
                                                                                     " is not one Liger patches"))


def config_header(decisions: list[Decision]) -> str:
    """YAML comments for the top of config.yaml: what each auto switch became and why."""
    if not decisions:
        return ""
    return "".join(f"# {d.line()}\n" for d in decisions)
