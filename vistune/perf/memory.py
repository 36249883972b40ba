"""Per-GPU memory of a LLaVA training step, from architecture numbers alone, before anything is launched.

Counts what PyTorch, PEFT and DeepSpeed actually keep: weights by dtype (NF4 for QLoRA), trainable weights,
gradients and AdamW states partitioned by ZeRO stage or offloaded, the tensors autograd saves for backward in
each decoder layer (with or without gradient checkpointing), the loss tail over the vocabulary, and an overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

from vistune.perf.arch import LlavaArch, LLMArch
from vistune.perf.flops import Workload

GIB = 1024**3
NF4_BYTES = 0.5 + 0.127 / 8  # 4-bit weights + double-quantised absmax constants (QLoRA paper: 0.127 bit/param)
GPU_CONTEXT_BYTES = 1.5 * GIB  # CUDA context, cuBLAS / NCCL workspaces: never visible to torch's allocator
FRAGMENTATION = 0.10  # caching-allocator fragmentation, charged on the memory that changes during a step


@dataclass(frozen=True)
class Engine:
    """How the step is distributed: ZeRO stage (0 = plain DDP / one process), offload, world size, precision."""

    zero_stage: int = 0
    offload_optimizer: bool = False  # ZeRO-Offload: AdamW states (and fp32 master) on the host
    offload_param: bool = False  # ZeRO-3 only: weights on the host, fetched per layer
    world_size: int = 1  # GPUs in the job (all nodes)
    dtype_bytes: int = 2  # 2: bf16 training; 4: fp32 (CPU)
    reduce_bucket: float | None = None  # DeepSpeed reduce_bucket_size in elements (None: hidden², HF's "auto")
    attention: str = "sdpa"  # sdpa / flash_attention_2 (no s² tensor) or eager (keeps the probabilities)
    device: str = "cuda"  # cuda: + GPU context, 1-byte dropout masks; cpu: float dropout masks, no context


@dataclass
class MemoryEstimate:
    """Bytes per GPU (offloaded bytes live on the host and are reported apart)."""

    weights: float = 0.0  # model weights resident on this GPU (frozen + trainable, after ZeRO-3 partitioning)
    zero3_live: float = 0.0  # ZeRO-3: weights gathered for the running module + prefetch + reduce buckets
    gradients: float = 0.0  # gradients of trainable weights (+ DDP / ZeRO-2 buckets)
    optimizer: float = 0.0  # AdamW m, v (+ fp32 master weights under DeepSpeed)
    activations: float = 0.0  # tensors saved for backward, whole micro-batch, at the peak of backward
    overhead: float = 0.0  # GPU context + fragmentation
    host_offload: float = 0.0  # on the host per GPU: offloaded optimizer states / weights

    @property
    def total(self) -> float:
        return self.weights + self.zero3_live + self.gradients + self.optimizer + self.activations + self.overhead

    def rows(self) -> list[tuple[str, float]]:
        return [
            ("weights", self.weights), ("ZeRO-3 gathered", self.zero3_live), ("gradients", self.gradients),
            ("optimizer states", self.optimizer), ("activations", self.activations), ("overhead", self.overhead),
        ]


def layer_activation_bytes(llm: LLMArch, work: Workload, b: int, lora_dropout: float = 0.05,
                           mask_bytes: int = 1) -> float:
    """Bytes autograd saves per token in one Llama decoder layer (HF implementation, SDPA / flash attention).

    Always (gradients pass through even a frozen layer): each RMSNorm's fp32 input (2 x 4h), the attention's
    q, k, v and output (2h + 2kv), and the SwiGLU's gate, SiLU and up outputs (3f). A trained linear also keeps
    its input (full: norm outputs twice, attention output, down_proj input; trained norms their normalised
    input). Each LoRA adapter keeps its dropout output, the dropout mask (bool on CUDA, a float tensor on CPU)
    and its A output (r).
    """
    h, f, kv = llm.hidden, llm.intermediate, llm.kv_width
    saved = 2 * 4 * h + (2 * h + 2 * kv) * b + 3 * f * b
    if work.llm_trained:
        saved += (2 * h + 2 * h + h + f) * b  # norm weights' inputs, q/k/v + gate/up inputs, o_proj, down_proj
    if work.uses_lora:
        targets = list(work.lora_targets or llm.linear_shapes())
        for name in targets:
            width_in = llm.linear_shapes()[name][0]
            saved += work.lora_r * b + (width_in * (b + mask_bytes) if lora_dropout > 0 else 0)
        if lora_dropout == 0:  # the adapters keep the (shared) linear inputs themselves
            saved += (2 * h + h + f) * b
    return saved


@dataclass
class Activations:
    """Activation memory of one micro-batch, by part (bytes)."""

    layers: float  # saved by the decoder layers (checkpointing: each layer's input only) + the final norm
    projector: float  # projector input, GELU input and output, per image
    loss_tail: float  # fp32 log-softmax output + its gradient + the nll gradient, over the vocabulary
    backward_work: float  # checkpointing: the layer being recomputed holds its full set again
    vision_forward: float  # the frozen tower's hidden states, alive only during its forward

    @property
    def saved(self) -> float:
        """What autograd holds at the end of the forward (the log-softmax output is a third of the loss tail)."""
        return self.layers + self.projector + self.loss_tail / 3

    @property
    def peak(self) -> float:
        return max(self.layers + self.projector + max(self.loss_tail, self.backward_work), self.vision_forward)


def activations(arch: LlavaArch, work: Workload, engine: Engine, tokens: int, micro_batch: int,
                images: int = 1, lora_dropout: float = 0.05, logit_fraction: float = 1.0,
                checkpoint_layers: int | None = None) -> Activations:
    """Activations of a micro-batch of `micro_batch` sequences of `tokens` tokens each; `logit_fraction` is the
    share of positions that reach lm_head (chunked cross-entropy: the supervised ones); with checkpointing,
    `checkpoint_layers` of the decoder layers recompute (None: all of them)."""
    llm, vis = arch.llm, arch.vision
    b = activation_dtype_bytes(work, engine)
    n = tokens * micro_batch
    mask_bytes = 1 if engine.device == "cuda" else b
    per_layer = layer_activation_bytes(llm, work, b, lora_dropout, mask_bytes) * n
    if engine.attention == "eager":
        per_layer += llm.heads * tokens * tokens * (4 + b) * micro_batch  # fp32 softmax + its cast copy
    # Backward frees each layer's saved tensors about as fast as it makes their gradients; with checkpointing
    # the layer being recomputed holds its full set again (measured on the tiny model, tests/plan).
    if work.gradient_checkpointing:
        k = llm.layers if checkpoint_layers is None else min(checkpoint_layers, llm.layers)
        layers = k * llm.hidden * b * n + (llm.layers - k) * per_layer  # a checkpointed layer keeps its input only
        backward_work = per_layer
    else:
        layers, backward_work = llm.layers * per_layer, 0.0
    layers += 4 * llm.hidden * n + (llm.hidden * b * n if work.llm_trained else 0)  # final norm (+ lm_head input)
    return Activations(
        layers=layers,
        projector=images * micro_batch * arch.projected_tokens * (vis.hidden + 2 * llm.hidden) * b,
        loss_tail=12 * llm.vocab * n * logit_fraction,
        backward_work=backward_work,
        vision_forward=images * micro_batch * arch.tower_passes * vis.tokens * vis.hidden * (vis.layers + 1 + 4) * b,
    )


def activation_dtype_bytes(work: Workload, engine: Engine) -> int:
    """QLoRA's residual stream runs in fp32: PEFT upcasts norms and embeddings, bitsandbytes returns x's dtype."""
    return 4 if (work.uses_lora and work.method == "qlora") else engine.dtype_bytes


def estimate_memory(arch: LlavaArch, work: Workload, engine: Engine, tokens: int, micro_batch: int,
                    images: int = 1, lora_dropout: float = 0.05, logit_fraction: float = 1.0,
                    checkpoint_layers: int | None = None) -> MemoryEstimate:
    """Per-GPU memory of one training step at the peak of backward, at steady state (optimizer states exist)."""
    llm, vis = arch.llm, arch.vision
    b, world, stage = engine.dtype_bytes, max(engine.world_size, 1), engine.zero_stage
    deepspeed = stage > 0
    qlora = work.uses_lora and work.method == "qlora"

    # Parameter counts by role.
    n_lora = work.lora_params(arch)
    n_trainable = (arch.projector_params if work.projector_trained else 0) + n_lora
    n_trainable += llm.params if work.llm_trained else 0
    n_trainable += vis.params if work.train_vision else 0
    n_llm_frozen = 0 if work.llm_trained else llm.params
    n_vision_frozen = 0 if work.train_vision else vis.params

    # Frozen weights: bf16 (fp32 on CPU); QLoRA: NF4 decoder linears, and PEFT's k-bit preparation upcasts
    # every other weight (vision tower, embeddings, lm_head, norms) to fp32.
    if qlora:
        linear = llm.layers * llm.layer_linear_params
        frozen = linear * NF4_BYTES + (n_llm_frozen - linear + n_vision_frozen) * 4
    else:
        frozen = (n_llm_frozen + n_vision_frozen) * b

    # Trainable weights: DeepSpeed keeps a bf16 model copy (fp32 master in the optimizer: K = 12 bytes);
    # plain torch keeps trainables in fp32 (PEFT casts adapters to fp32) with fp32 AdamW states (8 bytes).
    weight_b, grad_b, optim_b = (b, b, 12) if deepspeed and b == 2 else (4, 4, 8)
    trainable = n_trainable * weight_b

    if work.stage == "prefer" and work.llm_trained and work.reference_model:  # full: TRL's frozen reference copy (partitioned by ZeRO-3)
        frozen += (llm.params + vis.params + arch.projector_params) * b / (world if stage == 3 else 1)
    micro_batch *= work.sequences_per_sample  # a pair's chosen and rejected rows go through together

    est = MemoryEstimate()
    if stage == 3:
        if engine.offload_param:
            est.host_offload += (frozen + trainable) / world
        else:
            est.weights = (frozen + trainable) / world
        biggest = max(llm.intermediate * llm.hidden, llm.vocab * llm.hidden, vis.params // max(vis.layers, 1))
        bucket = engine.reduce_bucket or llm.hidden**2
        est.zero3_live = (2 * biggest + 0.9 * llm.hidden**2) * b + 2 * bucket * b
    else:
        est.weights = frozen + trainable

    grads = n_trainable * grad_b
    offload = engine.offload_optimizer and stage >= 2  # the gradient partitions follow the optimizer to the host
    if stage >= 2:
        bucket = engine.reduce_bucket or llm.hidden**2
        buckets = 2 * bucket * grad_b if stage == 2 else 0
        est.gradients = buckets if offload else grads / world + buckets
    else:
        est.gradients = grads * (2 if world > 1 else 1)  # DDP keeps its own gradient buckets

    optim = n_trainable * optim_b / (world if stage >= 1 else 1)
    if offload:
        est.host_offload += optim + grads / world
    else:
        est.optimizer = optim

    est.activations = activations(arch, work, engine, tokens, micro_batch, images, lora_dropout, logit_fraction,
                                  checkpoint_layers).peak
    dynamic = est.activations + est.zero3_live + est.gradients
    est.overhead = FRAGMENTATION * dynamic + (GPU_CONTEXT_BYTES if engine.device == "cuda" else 0)
    return est


@dataclass
class CheckpointingDecision:
    """Whether a step needs gradient checkpointing to fit, with the two estimates it was decided from."""

    needed: bool
    without: MemoryEstimate  # checkpointing off
    with_: MemoryEstimate  # checkpointing on for `layers` decoder layers
    budget: float  # bytes the step may use (device memory, or host RAM per process on CPU)
    margin: float  # share of the budget the step may fill
    layers: int = 0  # decoder layers to checkpoint: the fewest that fit (all of them when nothing fits)
    total_layers: int = 0  # decoder layers of the LLM

    def reason(self) -> str:
        off, on = self.without.total / GIB, self.with_.total / GIB
        limit = f"{self.margin:.0%} of {self.budget / GIB:.1f} GiB"
        if self.needed:
            which = "all" if self.layers >= self.total_layers else f"{self.layers} of {self.total_layers}"
            return f"the step needs ~{off:.1f} GiB without it, over {limit}; {which} layers: ~{on:.1f} GiB"
        return f"the step needs ~{off:.1f} GiB without it, within {limit}"


CHECKPOINTING_MARGIN = 0.8  # the memory model's error and allocator spikes get the other 20%


def decide_checkpointing(arch: LlavaArch, work: Workload, engine: Engine, tokens: int, micro_batch: int,
                         budget: float, images: int = 1, lora_dropout: float = 0.05, logit_fraction: float = 1.0,
                         margin: float = CHECKPOINTING_MARGIN) -> CheckpointingDecision:
    """Checkpointing off when the step without it fits `margin` of `budget` bytes; otherwise on for the fewest
    decoder layers that make it fit (all when none do): recompute costs a third more work per checkpointed layer,
    so it is only worth paying where it buys the memory."""
    import dataclasses

    def estimate(gc: bool, layers: int | None = None) -> MemoryEstimate:
        return estimate_memory(arch, dataclasses.replace(work, gradient_checkpointing=gc), engine, tokens,
                               micro_batch, images, lora_dropout, logit_fraction, layers)

    total, without = arch.llm.layers, estimate(False)
    if without.total <= margin * budget:
        return CheckpointingDecision(False, without, estimate(True), budget, margin, 0, total)
    for k in range(1, total + 1):
        partial = estimate(True, k)
        if partial.total <= margin * budget:
            return CheckpointingDecision(True, without, partial, budget, margin, k, total)
    return CheckpointingDecision(True, without, estimate(True), budget, margin, total, total)


def deepspeed_settings(path: str | None) -> dict:
    """zero_stage / offload flags / reduce bucket from a DeepSpeed JSON (by its name when the file is absent)."""
    import json
    import re
    from pathlib import Path

    if not path:
        return {"zero_stage": 0}
    file = Path(path)
    if not file.is_file():
        match = re.search(r"zero(\d)", file.name)
        offload = "offload" in file.name
        return {"zero_stage": int(match.group(1)) if match else 0, "offload_optimizer": offload,
                "offload_param": offload and "zero3" in file.name}
    zero = json.loads(file.read_text()).get("zero_optimization", {})
    bucket = zero.get("reduce_bucket_size", "auto")
    return {
        "zero_stage": int(zero.get("stage", 0)),
        "offload_optimizer": zero.get("offload_optimizer", {}).get("device", "none") in ("cpu", "nvme"),
        "offload_param": zero.get("offload_param", {}).get("device", "none") in ("cpu", "nvme"),
        "reduce_bucket": None if bucket == "auto" else float(bucket),
    }
