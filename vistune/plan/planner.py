"""The planner: will this run fit on these GPUs, how long will an epoch take, and what to change if it won't fit.

Combines the architecture numbers (arch), the FLOP model (flops), the memory model (memory) and a GPU table
(gpus). Memory is planned at the longest batch the data can produce; time at the mean sample, with a hardware
utilisation calibrated on LLaVA-1.5's published 8 x A100 times (or an MFU the user measured with `vistune bench`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from vistune.perf.arch import LlavaArch
from vistune.perf.flops import FlopCount, Workload, mean_sample_flops
from vistune.perf.gpus import GPU
from vistune.perf.memory import (
    CHECKPOINTING_MARGIN,
    GIB,
    Engine,
    MemoryEstimate,
    deepspeed_settings,
    estimate_memory,
)
from vistune.plan.datasets import DatasetStats

# Utilisation of *executed* FLOPs (recompute included) by engine, fitted to LLaVA-1.5's published times on
# 8 x A100 (REFERENCE.md): stage 1 runs ZeRO-2 (7B 3.5 h -> 0.44, 13B 5.5 h -> 0.54; geometric mean 0.49),
# stage 2 runs ZeRO-3 (7B 10 h -> 0.355, 13B 20 h -> 0.34; 0.35). ZeRO-3 gathers every layer's weights three
# times a step (forward, recompute, backward), which is why it sits lower. These correspond to 26-36% MFU.
DEFAULT_HFU = {0: 0.49, 1: 0.49, 2: 0.49, 3: 0.35}
HFU_SOURCE = "fitted to LLaVA-1.5's published 8xA100 times"


@dataclass
class PlanInput:
    """Everything the planner needs; `plan_input_from_config` fills it from a training recipe."""

    arch: LlavaArch
    work: Workload
    data: DatasetStats
    gpu: GPU
    model_name: str = "model"
    max_length: int = 2048  # tokens per sample after truncation (image tokens included)
    micro_batch: int = 16  # samples per GPU per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    epochs: float = 1.0  # passes over the data
    gpus_per_node: int = 8  # processes (GPUs) per node
    nodes: int = 1  # nodes in the job
    zero_stage: int = 0  # 0 = no DeepSpeed (DDP / one process)
    offload_optimizer: bool = False  # ZeRO-Offload of AdamW states (and gradient partitions) to the host
    offload_param: bool = False  # ZeRO-3 weights on the host
    dtype_bytes: int = 2  # 2 = bf16 training, 4 = fp32
    attention: str = "sdpa"  # sdpa / flash_attention_2, or eager (keeps s² probabilities)
    lora_dropout: float = 0.05  # > 0: each adapter keeps a dropout mask and output
    reduce_bucket: float | None = None  # DeepSpeed reduce_bucket_size (elements), None = HF's "auto"
    mfu: float | None = None  # a measured MFU for this configuration; None = DEFAULT_HFU

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    @property
    def peak_tokens(self) -> int:
        """Tokens of the longest sample, which decides the longest padded batch (length grouping meets it)."""
        longest = self.data.longest_tokens(self.arch.image_tokens)
        return min(self.max_length, longest) if longest else self.max_length

    def engine(self) -> Engine:
        return Engine(self.zero_stage, self.offload_optimizer, self.offload_param, self.world_size,
                      self.dtype_bytes, self.reduce_bucket, self.attention)

    def replace(self, **changes) -> PlanInput:
        return dataclasses.replace(self, **changes)


@dataclass
class Suggestion:
    change: str  # what to change, in recipe terms
    memory_gib: float  # per GPU
    hours: float  # per epoch
    host_gib: float = 0.0  # host RAM per GPU for offloaded states


@dataclass
class Plan:
    input: PlanInput
    memory: MemoryEstimate
    flops: FlopCount  # per mean sample
    mfu: float  # model FLOP utilisation assumed for this configuration
    mfu_source: str
    hours: float  # per epoch
    hours_at_peak: float  # per epoch at 100% MFU
    suggestions: list[Suggestion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def memory_gib(self) -> float:
        return self.memory.total / GIB

    @property
    def fits(self) -> bool:
        return self.memory.total <= self.input.gpu.memory_gib * GIB

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.input.data.samples / self.input.global_batch)


def estimate(inp: PlanInput) -> Plan:
    """Memory, fit and time for one configuration (no suggestions)."""
    memory = estimate_memory(inp.arch, inp.work, inp.engine(), inp.peak_tokens, inp.micro_batch,
                             images=1, lora_dropout=inp.lora_dropout)
    flops = mean_sample_flops(inp.arch, inp.work, inp.data.mean_text_tokens, inp.data.image_fraction)
    if inp.mfu is not None:
        mfu, source = inp.mfu, "given (--mfu)"
    else:
        hfu = DEFAULT_HFU[inp.zero_stage]
        mfu, source = hfu * flops.model / flops.executed, f"{hfu:.0%} of executed FLOPs, {HFU_SOURCE}"
    peak = inp.world_size * inp.gpu.bf16_tflops * 1e12
    total = flops.model * inp.data.samples * inp.epochs
    return Plan(inp, memory, flops, mfu, source, total / (peak * mfu) / 3600, total / peak / 3600)


def plan(inp: PlanInput) -> Plan:
    """`estimate` plus notes, and, when it does not fit, concrete changes that do (each one re-estimated)."""
    result = estimate(inp)
    result.notes = _notes(inp)
    if not result.fits:
        result.suggestions = suggest(inp)
    return result


def largest_micro_batch(inp: PlanInput) -> int | None:
    """The largest micro-batch <= the configured one (halving) that fits, or None."""
    mb = inp.micro_batch
    while mb >= 1:
        if estimate(inp.replace(micro_batch=mb)).fits:
            return mb
        mb //= 2
    return None


def _with_micro_batch(inp: PlanInput, label: str) -> tuple[str, PlanInput] | None:
    """`inp` at its largest fitting micro-batch, grad accumulation raised to keep the global batch."""
    mb = largest_micro_batch(inp)
    if mb is None:
        return None
    if mb == inp.micro_batch:
        return label, inp
    accum = math.ceil(inp.grad_accum * inp.micro_batch / mb)
    change = f"optim.per_device_batch_size={mb} optim.grad_accum={accum}"
    return (f"{label} + {change}" if label else change), inp.replace(micro_batch=mb, grad_accum=accum)


def suggest(inp: PlanInput, limit: int = 5) -> list[Suggestion]:
    """Changes that make `inp` fit, from least to most intrusive, each with its memory and hours.

    An engine change (ZeRO stage, offload) is listed only when it allows a larger micro-batch than the
    changes before it; a method change (LoRA, QLoRA) is always listed when it fits.
    """
    base = inp
    candidates: list[tuple[str, PlanInput, bool]] = [("", inp, False)]  # (label, input, always list)
    if not inp.work.gradient_checkpointing:
        base = inp.replace(work=dataclasses.replace(inp.work, gradient_checkpointing=True))
        candidates.append(("optim.gradient_checkpointing=true", base, False))
    if inp.world_size > 1:
        for stage in (2, 3):
            if inp.zero_stage < stage:
                label = f"deepspeed=configs/deepspeed/zero{stage}.json"
                candidates.append((label, base.replace(zero_stage=stage), False))
    offload = base.replace(zero_stage=3, offload_optimizer=True, offload_param=True)
    candidates.append(("deepspeed=configs/deepspeed/zero3_offload.json", offload, False))
    if inp.work.stage == "instruct" and inp.work.method != "qlora":
        for method in ("lora", "qlora") if inp.work.method == "full" else ("qlora",):
            changed = base.replace(work=dataclasses.replace(base.work, method=method))
            candidates.append((f"method={method}", changed, True))
    out: list[Suggestion] = []
    best_micro_batch = 0
    for label, candidate, always in candidates:
        found = _with_micro_batch(candidate, label)
        if found is None or not found[0] or (found[1].micro_batch <= best_micro_batch and not always):
            continue
        best_micro_batch = max(best_micro_batch, found[1].micro_batch)
        est = estimate(found[1])
        out.append(Suggestion(found[0], est.memory_gib, est.hours, est.memory.host_offload / GIB))
    return out[:limit]


def _notes(inp: PlanInput) -> list[str]:
    notes = [f"memory planned at the longest batch: {inp.micro_batch} x {inp.peak_tokens} tokens; "
             f"time at the mean sample ({inp.data.mean_tokens(inp.arch.image_tokens):.0f} tokens, {inp.data.source})"]
    if inp.offload_optimizer or inp.offload_param:
        notes.append("offload: host-side AdamW steps and PCIe transfers are not in the time estimate (slower)")
    if inp.work.stage == "prefer" and inp.work.reference_model:
        notes.append("prefer: each sample is a pair (chosen + rejected rows through the policy, then a no-grad "
                     "reference forward of both: the adapter-free network for LoRA, a frozen copy for full)")
    elif inp.work.stage == "prefer":
        notes.append("prefer (orpo / simpo): each sample is a pair (chosen + rejected rows through the policy); "
                     "no reference model, no reference forward")
    if inp.work.method == "qlora" and inp.work.stage != "align":
        notes.append("QLoRA dequantises each weight per matmul: slower than LoRA, not in the time estimate")
    if inp.zero_stage == 3 and inp.gpu.interconnect == "pcie":
        notes.append(f"ZeRO-3 over PCIe ({inp.gpu.name}) gathers weights without NVLink: expect lower throughput")
    if inp.nodes > 1 and inp.zero_stage == 3:
        notes.append("ZeRO-3 across nodes needs a fast interconnect (InfiniBand / RoCE); time assumes one")
    if inp.work.stage == "align" and inp.work.gradient_checkpointing:
        notes.append("align with gradient checkpointing: the frozen LLM's recompute is a third of the work; "
                     "turn it off when the activations fit")
    return notes


def anyres_arch(arch, config):
    """For model.arch llava_next / llava_onevision: the image tokens and tower inputs of a typical image
    (vistune.model.anyres.TYPICAL_IMAGE), counted by transformers' processor for that arch."""
    name, pinpoints, aspect = config.model.arch, config.model.image_grid_pinpoints, config.model.vision_aspect_ratio
    if config.model.base:  # a LLaVA-NeXT / OneVision base brings its own arch and grids
        from vistune.model.checkpoints.base import base_llava_config

        base = base_llava_config(config.model.base, config.model.base_vision)
        name, pinpoints = base.model_type, getattr(base, "image_grid_pinpoints", None)
        aspect = getattr(base, "vision_aspect_ratio", aspect)
    if name == "llava":
        return arch
    import dataclasses

    from vistune.model.anyres import count_tokens

    vis = arch.vision
    tokens, passes = count_tokens(name, tower_size=vis.image_size, patch_size=vis.patch_size,
                                  drop_cls=vis.cls_token, pinpoints=pinpoints, vision_aspect_ratio=aspect)
    return dataclasses.replace(arch, anyres_tokens=tokens, tower_passes=passes)


def plan_input_from_config(config, gpu: GPU, gpus_per_node: int = 1, nodes: int = 1, **overrides) -> PlanInput:
    """A PlanInput from a training recipe (`vistune.train.run.config.RunConfig`); `overrides` replace fields."""
    from vistune.model.compose import torch_dtype
    from vistune.plan.datasets import dataset_stats

    dtype = torch_dtype(config.model.dtype)
    work = Workload.of_run(config)
    data = dataset_stats(config.data.path)
    if config.stage == "rl":  # each prompt trains as rl.num_generations sequences: prompt + a completion
        from vistune.plan.rollouts import completion_sequences

        data = completion_sequences(data, config.rl.num_generations, config.rl.max_completion_length)
    inp = PlanInput(
        arch=anyres_arch(_arch(config), config),
        work=work,
        data=data,
        gpu=gpu,
        model_name=config.model.base or config.model.preset or config.llm,
        max_length=config.data.max_length,
        micro_batch=config.optim.per_device_batch_size,
        grad_accum=config.optim.grad_accum,
        epochs=config.optim.epochs,
        gpus_per_node=gpus_per_node,
        nodes=nodes,
        dtype_bytes=dtype.itemsize,
        attention="eager" if config.model.attn_implementation == "eager" else "sdpa",
        lora_dropout=config.lora.dropout,
        **deepspeed_settings(config.deepspeed),
    )
    inp = inp.replace(**{k: v for k, v in overrides.items() if v is not None})
    if config.optim.gradient_checkpointing == "auto":  # as `vistune train` decides it, on this plan's GPU
        needed = estimate(inp).memory.total > CHECKPOINTING_MARGIN * inp.gpu.memory_gib * GIB
        inp = inp.replace(work=dataclasses.replace(inp.work, gradient_checkpointing=needed))
    return inp


def _arch(config):
    """The run's architecture: read from model.base's config when there is one, else from the parts."""
    from vistune.perf.arch import llava_arch_from_config, resolve_llava_arch

    if config.model.base:
        from vistune.model.checkpoints.base import base_llava_config

        return llava_arch_from_config(base_llava_config(config.model.base, config.model.base_vision))
    return resolve_llava_arch(config.vision, config.llm)
