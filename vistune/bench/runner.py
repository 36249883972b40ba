"""`vistune bench`: training throughput of a recipe, and of variants of it measured interleaved (A B A B ...).

Each run builds the model and data from the config, trains `warmup + steps` optimizer steps with HF Trainer
(no checkpoints, no logs) and reports the `steps` after the warm-up: samples/s, tokens/s, image tokens/s,
padding and dataloader-wait fractions, peak memory and model FLOP/s with MFU against the measured matmul peak.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch

from vistune.perf.peak import Peak, device_peak
from vistune.train.run.config import RunConfig, load_config


@dataclass
class Variant:
    name: str  # "base", or the overrides joined ("data.packing=true optim.cross_entropy=chunked")
    overrides: list[str] = field(default_factory=list)  # key=value applied on top of the bench's base config


@dataclass
class Measurement:
    """One run of one variant, over its measured steps."""

    variant: str
    round: int
    steps: int
    seconds: float
    samples_per_s: float
    tokens_per_s: float
    image_tokens_per_s: float
    padding_fraction: float
    wait_fraction: float
    peak_memory_mib: float
    model_flops_per_s: float
    mfu: float
    samples_per_cpu_s: float = 0.0  # samples per second of this process's CPU time: robust to a busy shared machine
    loss: float | None = None  # mean training loss over the measured steps (a sanity check, not a metric)
    settings: dict = field(default_factory=dict)  # the fast-path switches as this run resolved them (auto included)
    losses: list[float] = field(default_factory=list)  # every step's training loss, warm-up included


# Switches whose `auto` a run resolves itself: the bench records what each variant actually ran with.
RESOLVED_KEYS = ("data.packing", "optim.gradient_checkpointing", "optim.checkpoint_layers", "optim.cross_entropy",
                 "optim.liger",
                 "optim.torch_compile", "model.attn_implementation")


def _get(config: RunConfig, dotted: str):
    section, name = dotted.split(".")
    return getattr(getattr(config, section), name)


# Named sets of overrides for `--compare settings=a,b`: vistune's defaults against LLaVA's own settings, and the
# GPU kernels one at a time (a variant this machine cannot run is skipped with a message).
SETTINGS: dict[str, list[str]] = {
    "vistune": [],  # the defaults: packing, chunked CE, checkpointing only when needed, Liger where installed
    "llava": ["data.packing=false", "optim.cross_entropy=full", "optim.gradient_checkpointing=true",
              "optim.liger=false"],  # LLaVA-1.5's trainer: padded batches, full-vocabulary CE, checkpointing
    "padded-sdpa": ["data.packing=false", "model.attn_implementation=sdpa"],  # the defaults without packing
    "flash": ["data.packing=true", "model.attn_implementation=flash_attention_2"],  # packed rows, flash varlen
    "liger": ["optim.liger=true"],  # Liger's RMSNorm / SwiGLU / RoPE
    "no-liger": ["optim.liger=false"],
    "liger-ce": ["optim.liger=true", "optim.cross_entropy=liger"],  # + Liger's fused linear cross-entropy
    "compile": ["optim.torch_compile=true"],  # torch.compile through HF Trainer
}


def _axis(item: str) -> list[tuple[str, list[str]]]:
    """`key=a,b` -> [(name, overrides)] for each value; `settings=a,b` names sets from SETTINGS."""
    if "=" not in item:
        raise ValueError(f"--compare {item!r} is not key=a,b")
    key, values = (x.strip() for x in item.split("=", 1))
    names = [v.strip() for v in values.split(",") if v.strip()]
    if key != "settings":
        return [(f"{key}={v}", [f"{key}={v}"]) for v in names]
    unknown = [v for v in names if v not in SETTINGS]
    if unknown:
        raise ValueError(f"--compare settings: unknown {', '.join(unknown)} (known: {', '.join(SETTINGS)})")
    return [(f"settings={v}", SETTINGS[v]) for v in names]


def variants_from(compare: list[str]) -> list[Variant]:
    """`key=a,b` strings -> the product of their values, first value of each key first (the baseline)."""
    if not compare:
        return [Variant("base")]
    axes = [_axis(item) for item in compare]
    return [Variant(" ".join(name for name, _ in combo), [o for _, overrides in combo for o in overrides])
            for combo in itertools.product(*axes)]


def unavailable(config: RunConfig) -> str | None:
    """Why this machine cannot run `config` (a kernel or device it asks for is missing), or None."""
    from vistune.train.run.preflight import check_config

    problems = check_config(config)
    return "; ".join(p.what for p in problems) if problems else None


def _release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:  # Linux: writing 5 resets the process's peak RSS (VmHWM) to its current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_memory_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_once(config: RunConfig, steps: int, warmup: int, peak: Peak, variant: str = "base",
             round_index: int = 0) -> Measurement:
    """Trains `warmup + steps` optimizer steps of `config` and measures the last `steps`."""
    from transformers import TrainerCallback, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from vistune.data_prep import SkipLog
    from vistune.perf.meter import meter_for
    from vistune.train.loop.trainer import VistuneTrainer
    from vistune.train.run.build import build_run, length_sampler_fn, loss_function, training_callbacks
    from vistune.train.stages.engine import training_arguments

    class _CpuClock(TrainerCallback):
        """The training process's CPU time at the end of each optimizer step (the steps the meter times)."""

        def __init__(self):
            self.at = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.at[0] = time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.at[state.global_step] = time.process_time()

    class _Losses(TrainerCallback):
        def __init__(self):
            self.values = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.values.append((state.global_step, float(logs["loss"])))

    _release_memory()
    _reset_peak_memory()
    with tempfile.TemporaryDirectory(prefix="vistune-bench-") as tmp:
        config.output_dir, config.save_steps, config.report_to, config.logging_steps = tmp, 0, "none", 1
        config.optim.max_steps = warmup + steps
        set_seed(config.seed)
        built = build_run(config, SkipLog())  # the auto switches resolve exactly as in `vistune train`
        model, dataset = built.model, built.dataset
        args = training_arguments(config)
        args.disable_tqdm = True
        meter, losses, clock = meter_for(model, config, peak.flops_per_s), _Losses(), _CpuClock()
        trainer = VistuneTrainer(model=model, args=args, train_dataset=dataset, data_collator=built.collator,
                                 callbacks=[meter, losses, clock, *training_callbacks(config)], meter=meter, compute_loss_func=loss_function(config),
                                 module_lrs=config.module_lrs(),
                                 train_sampler_fn=length_sampler_fn(config, dataset))
        for printer in (PrinterCallback, ProgressCallback):  # quiet: the bench prints its own lines
            if any(isinstance(cb, printer) for cb in trainer.callback_handler.callbacks):
                trainer.remove_callback(printer)
        trainer.train()
        window = meter.window(warmup)
        cpu_seconds = clock.at[max(clock.at)] - clock.at[min(warmup, max(clock.at))]
        del trainer, model
    memory = _peak_memory_mib()
    measured = [loss for step, loss in losses.values if step > warmup]
    flops = window.rate(window.stats.model_flops)
    return Measurement(
        variant=variant, round=round_index, steps=window.steps, seconds=round(window.seconds, 3),
        samples_per_s=window.rate(window.stats.samples), tokens_per_s=window.rate(window.stats.tokens),
        image_tokens_per_s=window.rate(window.stats.image_tokens), padding_fraction=window.padding_fraction,
        wait_fraction=window.wait_fraction, peak_memory_mib=round(memory, 1), model_flops_per_s=flops,
        mfu=flops / peak.flops_per_s if peak.flops_per_s else 0.0,
        samples_per_cpu_s=window.stats.samples / cpu_seconds if cpu_seconds > 0 else 0.0,
        loss=sum(measured) / len(measured) if measured else None,
        losses=[loss for _, loss in losses.values],
        settings={key: _get(config, key) for key in RESOLVED_KEYS},
    )


@dataclass
class BenchResult:
    config: str
    variants: list[Variant]
    peak: Peak  # the highest peak measured during the bench (the conservative choice for MFU)
    runs: list[Measurement]
    threads: int = field(default_factory=torch.get_num_threads)

    def to_dict(self) -> dict:
        from vistune.bench.report import ratios, summary

        return {"config": self.config, "threads": self.threads, "peak": asdict(self.peak),
                "variants": [asdict(v) for v in self.variants], "runs": [asdict(r) for r in self.runs],
                "summary": summary(self), "ratios": ratios(self)}


def bench(config_path: str, compare: list[str] | None = None, overrides: list[str] | None = None, steps: int = 8,
          warmup: int = 2, rounds: int = 2, threads: int | None = None, progress=print) -> BenchResult:
    """Runs every variant `rounds` times, interleaved (A B A B ...), measuring the peak before each round.

    `threads` sets torch's intra-op threads for the peak and every run alike (on a shared CPU, fewer threads than
    cores keeps OpenMP from stalling behind other processes)."""
    if threads:
        torch.set_num_threads(threads)
    variants = variants_from(compare or [])
    for v in list(variants):  # fail on a bad key before anything runs; skip what this machine cannot run
        missing = unavailable(load_config(config_path, [*(overrides or []), *v.overrides]))
        if missing:
            progress(f"skipping variant {v.name}: {missing}")
            variants.remove(v)
    if not variants:
        raise ValueError("no variant can run on this machine (see the lines above)")
    peaks, runs = [], []
    for r in range(rounds):
        peaks.append(device_peak())
        for v in variants:
            config = load_config(config_path, [*(overrides or []), *v.overrides])
            m = run_once(config, steps, warmup, max(peaks, key=lambda p: p.flops_per_s), v.name, r)
            runs.append(m)
            progress(f"round {r + 1}/{rounds} {v.name}: {m.samples_per_s:.2f} samples/s, mfu {m.mfu:.1%}")
    peak = max(peaks, key=lambda p: p.flops_per_s)
    for m in runs:  # every MFU against the one (highest) peak
        m.mfu = m.model_flops_per_s / peak.flops_per_s
    return BenchResult(config_path, variants, peak, runs)
