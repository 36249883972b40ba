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
from dataclasses import asdict, dataclass, field

import torch

from vistune.perf.peak import Peak, device_peak
from vistune.train.config import RunConfig, load_config


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
    loss: float | None = None  # mean training loss over the measured steps (a sanity check, not a metric)


def variants_from(compare: list[str]) -> list[Variant]:
    """`key=a,b` strings -> the product of their values, first value of each key first (the baseline)."""
    if not compare:
        return [Variant("base")]
    axes = []
    for item in compare:
        if "=" not in item:
            raise ValueError(f"--compare {item!r} is not key=a,b")
        key, values = item.split("=", 1)
        axes.append([f"{key.strip()}={v.strip()}" for v in values.split(",") if v.strip()])
    return [Variant(" ".join(combo), list(combo)) for combo in itertools.product(*axes)]


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
    from vistune.train.build import build_dataset, build_model, length_sampler_fn, loss_function
    from vistune.train.engine import training_arguments
    from vistune.train.trainer import VistuneTrainer

    class _Losses(TrainerCallback):
        def __init__(self):
            self.values = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and state.global_step > warmup:
                self.values.append(float(logs["loss"]))

    _release_memory()
    _reset_peak_memory()
    with tempfile.TemporaryDirectory(prefix="vistune-bench-") as tmp:
        config.output_dir, config.save_steps, config.report_to, config.logging_steps = tmp, 0, "none", 1
        config.optim.max_steps = warmup + steps
        set_seed(config.seed)
        model, processor = build_model(config)
        args = training_arguments(config)
        args.disable_tqdm = True
        dataset, collator = build_dataset(config, processor, model, SkipLog())
        meter, losses = meter_for(model, config, peak.flops_per_s), _Losses()
        trainer = VistuneTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator,
                                 callbacks=[meter, losses], meter=meter, compute_loss_func=loss_function(config),
                                 module_lrs=config.module_lrs(),
                                 train_sampler_fn=length_sampler_fn(config, dataset))
        for printer in (PrinterCallback, ProgressCallback):  # quiet: the bench prints its own lines
            if any(isinstance(cb, printer) for cb in trainer.callback_handler.callbacks):
                trainer.remove_callback(printer)
        trainer.train()
        window = meter.window(warmup)
        del trainer, model
    memory = _peak_memory_mib()
    flops = window.rate(window.stats.model_flops)
    return Measurement(
        variant=variant, round=round_index, steps=window.steps, seconds=round(window.seconds, 3),
        samples_per_s=window.rate(window.stats.samples), tokens_per_s=window.rate(window.stats.tokens),
        image_tokens_per_s=window.rate(window.stats.image_tokens), padding_fraction=window.padding_fraction,
        wait_fraction=window.wait_fraction, peak_memory_mib=round(memory, 1), model_flops_per_s=flops,
        mfu=flops / peak.flops_per_s if peak.flops_per_s else 0.0,
        loss=sum(losses.values) / len(losses.values) if losses.values else None,
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
    for v in variants:  # fail on a bad key before anything runs
        load_config(config_path, [*(overrides or []), *v.overrides])
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
