"""The FLOP model of a LLaVA training step, written once: the planner's hours and the benchmark's MFU both use it.

Per token: 6·N for trained LLM weights, 4·N for frozen LLM weights that still pass gradients (forward + input
gradient, no weight gradient), 6·N_lora for LoRA weights, 2·N for the forward-only vision tower, plus attention
(4·L·d·s per token forward, three times that with a backward; PaLM's convention, no causal halving). Gradient
checkpointing's recompute is counted apart: model FLOPs (for MFU) exclude it, executed FLOPs include it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from vistune.perf.arch import LlavaArch


@dataclass(frozen=True)
class Workload:
    """What trains in a step, which decides how many FLOPs each weight costs."""

    stage: str = "instruct"  # align: projector only; instruct: LoRA / QLoRA / full + projector; prefer: DPO pairs
    method: str = "lora"  # lora, qlora or full (ignored for align)
    lora_r: int = 128  # LoRA rank
    lora_targets: tuple[str, ...] | None = None  # decoder linear leaf names; None = all seven
    train_vision: bool = False  # vision tower trained too (LLaVA-1.5: frozen)
    gradient_checkpointing: bool = True  # decoder layers recompute their forward in backward
    reference_model: bool = True  # prefer: a no-grad reference forward of both rows (sigmoid, ipo; not orpo, simpo)

    @classmethod
    def of_run(cls, config, gradient_checkpointing: bool | None = None) -> Workload:
        """The workload of a training recipe (a `vistune.train.run.config.RunConfig`, read by attribute: perf sits below
        train); `gradient_checkpointing` None = what the recipe sets (auto counts as off)."""
        targets = config.lora.target_modules
        return cls(stage=config.stage, method=config.method, lora_r=config.lora.r,
                   lora_targets=tuple(targets) if targets else None, train_vision=config.trains_vision,
                   gradient_checkpointing=(config.optim.gradient_checkpointing is True
                                           if gradient_checkpointing is None else gradient_checkpointing),
                   reference_model=config.stage != "prefer" or config.preference.loss in ("sigmoid", "ipo"))

    @property
    def llm_trained(self) -> bool:
        return self.stage != "align" and self.method == "full"

    @property
    def uses_lora(self) -> bool:
        return self.stage != "align" and self.method in ("lora", "qlora")

    @property
    def projector_trained(self) -> bool:
        """prefer / rl with LoRA train the adapter only: the adapter-free network is their reference."""
        return self.stage not in ("prefer", "rl") or self.method == "full"

    @property
    def sequences_per_sample(self) -> int:
        """A prefer sample is a pair: the chosen and the rejected sequence."""
        return 2 if self.stage == "prefer" else 1

    def lora_params(self, arch: LlavaArch) -> int:
        targets = list(self.lora_targets) if self.lora_targets else None
        return arch.llm.lora_params(self.lora_r, targets) if self.uses_lora else 0


@dataclass
class FlopCount:
    """FLOPs of one training step over some samples, by where they are spent."""

    vision: float = 0.0  # vision tower (forward only unless trained)
    projector: float = 0.0  # MLP projector (always trained)
    llm: float = 0.0  # LLM weight matmuls incl. lm_head (6·N trained, 4·N frozen passing gradients)
    lora: float = 0.0  # LoRA A/B matmuls (6·N_lora)
    attention: float = 0.0  # QK^T and AV, forward + backward
    recompute: float = 0.0  # gradient checkpointing's second forward of the decoder layers

    @property
    def model(self) -> float:
        """FLOPs the model needs (MFU's numerator): recompute excluded."""
        return self.vision + self.projector + self.llm + self.lora + self.attention

    @property
    def executed(self) -> float:
        """FLOPs the GPU runs: recompute included."""
        return self.model + self.recompute

    def __add__(self, other: FlopCount) -> FlopCount:
        return FlopCount(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def scaled(self, factor: float) -> FlopCount:
        return FlopCount(**{f.name: getattr(self, f.name) * factor for f in fields(self)})


def sequence_flops(arch: LlavaArch, work: Workload, text_tokens: float, images: int = 1) -> FlopCount:
    """FLOPs to train on one sample: `text_tokens` text tokens and `images` images (each adds image tokens).

    Padding is not counted (it is waste, not model work); a packed row is the sum of its samples.
    """
    llm, vis = arch.llm, arch.vision
    s = text_tokens + images * arch.image_tokens
    weight_mult = 6 if work.llm_trained else 4  # frozen weights: forward 2·N + input gradient 2·N
    attn_fwd = 4 * llm.layers * llm.heads * llm.head_dim * s * s  # QK^T + AV over the sequence
    n_lora = work.lora_params(arch)

    vision_mult = 3 if work.train_vision else 1
    vision_fwd = 2 * vis.matmul_params * vis.tokens + 4 * vis.layers * vis.hidden * vis.tokens**2
    proj_matmul = vis.hidden * llm.hidden + llm.hidden * llm.hidden

    count = FlopCount(
        vision=images * arch.tower_passes * vision_mult * vision_fwd,
        projector=images * (6 if work.projector_trained else 2) * proj_matmul * arch.projected_tokens,
        llm=weight_mult * llm.matmul_params * s,
        lora=6 * n_lora * s,
        attention=3 * attn_fwd,
    )
    if work.gradient_checkpointing:
        count.recompute = 2 * (llm.layers * llm.layer_linear_params + n_lora) * s + attn_fwd
    return count


def reference_flops(arch: LlavaArch, text_tokens: float, images: int = 1) -> FlopCount:
    """The prefer stage's reference forward of one sequence (no gradient, no LoRA: adapter disabled or a copy)."""
    llm, vis = arch.llm, arch.vision
    s = text_tokens + images * arch.image_tokens
    return FlopCount(
        vision=images * (2 * vis.matmul_params * vis.tokens + 4 * vis.layers * vis.hidden * vis.tokens**2),
        projector=images * 2 * (vis.hidden * llm.hidden + llm.hidden * llm.hidden) * arch.image_tokens,
        llm=2 * llm.matmul_params * s,
        attention=4 * llm.layers * llm.heads * llm.head_dim * s * s,
    )


def sample_flops(arch: LlavaArch, work: Workload, text_tokens: float, images: int = 1) -> FlopCount:
    """FLOPs to train on one sample; a prefer pair is two sequences trained (plus two reference forwards, for the
    losses that have a reference model)."""
    count = sequence_flops(arch, work, text_tokens, images)
    if work.stage == "prefer":
        if work.reference_model:
            count = count + reference_flops(arch, text_tokens, images)
        count = count.scaled(2)
    return count


def mean_sample_flops(
    arch: LlavaArch, work: Workload, mean_text_tokens: float, image_fraction: float = 1.0
) -> FlopCount:
    """Mean FLOPs per sample of a dataset with `image_fraction` of samples holding one image."""
    with_image = sample_flops(arch, work, mean_text_tokens, images=1).scaled(image_fraction)
    text_only = sample_flops(arch, work, mean_text_tokens, images=0).scaled(1 - image_fraction)
    return with_image + text_only


def mfu(model_flops: float, seconds: float, peak_flops_per_s: float) -> float:
    """Model FLOP utilisation: model FLOPs done per second over the hardware's peak."""
    return model_flops / (seconds * peak_flops_per_s) if seconds > 0 and peak_flops_per_s > 0 else 0.0
