"""The planner's answer as text: a memory table per GPU, fit, hours per epoch, and what to change.

Kept apart from the planner so that the numbers (planner.py) stay testable without parsing printed text.
"""

from __future__ import annotations

from vistune.perf.memory import GIB
from vistune.plan.planner import Plan


def _gib(x: float) -> str:
    return f"{x / GIB:8.2f}"


def format_plan(plan: Plan) -> str:
    inp, mem = plan.input, plan.memory
    work = inp.work
    method = "projector only" if work.stage == "align" else work.method + (f" r{work.lora_r}" if work.uses_lora else "")
    zero = f"ZeRO-{inp.zero_stage}" if inp.zero_stage else "no DeepSpeed"
    if inp.offload_optimizer or inp.offload_param:
        zero += " + offload"
    lines = [
        f"{inp.model_name}  {work.stage} ({method})  on {inp.nodes} x {inp.gpus_per_node} x {inp.gpu.name} "
        f"({inp.gpu.memory_gib:.0f} GiB, {inp.gpu.bf16_tflops:.0f} TFLOP/s bf16)",
        f"{zero}, micro-batch {inp.micro_batch} x grad-accum {inp.grad_accum} x {inp.world_size} GPUs = "
        f"global batch {inp.global_batch}; gradient checkpointing {'on' if work.gradient_checkpointing else 'off'}",
        "",
        f"{'memory per GPU':<22}{'GiB':>8}",
        "-" * 30,
    ]
    lines += [f"{name:<22}{_gib(value)}" for name, value in mem.rows() if value]
    lines += ["-" * 30, f"{'total':<22}{_gib(mem.total)}   of {inp.gpu.memory_gib:.1f} GiB: "
              + ("FITS" if plan.fits else "DOES NOT FIT")]
    if mem.host_offload:
        lines.append(f"{'host RAM per GPU':<22}{_gib(mem.host_offload)}   (offloaded; x {inp.gpus_per_node} per node)")
    flops = plan.flops
    lines += [
        "",
        f"time per epoch: {plan.hours:.1f} h  ({inp.data.samples:,} samples, {plan.steps_per_epoch:,} steps; "
        f"{plan.hours * inp.world_size:.0f} GPU-hours)",
        f"  FLOPs per sample {flops.model / 1e12:.1f} T (model) / {flops.executed / 1e12:.1f} T (executed, "
        f"recompute incl.); {plan.hours_at_peak:.2f} h at 100% MFU",
        f"  MFU {plan.mfu:.0%}: {plan.mfu_source}",
    ]
    if plan.suggestions:
        lines += ["", "to make it fit (each re-estimated):"]
        for s in plan.suggestions:
            host = f"  + {s.host_gib:.0f} GiB host RAM per GPU" if s.host_gib else ""
            lines.append(f"  {s.change}\n      -> {s.memory_gib:.1f} GiB per GPU, {s.hours:.1f} h per epoch{host}")
    elif not plan.fits:
        lines += ["", "nothing tried fits: use more GPUs (ZeRO-3 partitions by GPU count) or a larger GPU"]
    lines += [""] + [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)
