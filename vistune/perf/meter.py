"""Per-step throughput of a training run: tokens, padding, images, model FLOPs, dataloader wait and step time.

The training engine's trainer times how long each step waits for its batches and hands them to a `StepMeter`, which counts
what they hold (with `flops.py`, per sample, so attention is counted per sample and padding is never counted);
the meter is also a callback that closes each step's record, and answers windows of steps for logs and benches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback

from vistune.perf.arch import LlavaArch
from vistune.perf.flops import Workload, sequence_flops


@dataclass
class BatchStats:
    """What one (micro-)batch holds."""

    samples: int = 0
    tokens: int = 0  # real tokens, image tokens included
    slots: int = 0  # token positions the model runs on (tokens + padding)
    image_tokens: int = 0
    model_flops: float = 0.0  # flops.py model FLOPs of the real samples (no padding, no recompute)

    def __add__(self, other: BatchStats) -> BatchStats:
        return BatchStats(*(getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__))


def sample_lengths(batch: dict) -> list[tuple[int, int]]:
    """[(start, end)] of each sample's tokens, flattened over rows (packed rows hold several samples)."""
    ids = batch["input_ids"]
    width = ids.shape[1] if ids.ndim == 2 else 0
    if "position_ids" in batch and batch.get("attention_mask") is None:
        from vistune.data_prep.batching.packing import segment_lengths

        spans, offset = [], 0
        for row in batch["position_ids"]:
            for n in segment_lengths(row):
                spans.append((offset, offset + n))
                offset += n
        return spans
    lengths = batch["attention_mask"].sum(1).tolist() if "attention_mask" in batch else [width] * len(ids)
    return [(r * width, r * width + int(n)) for r, n in enumerate(lengths)]


def batch_stats(batch: dict, arch: LlavaArch, work: Workload, image_token_id: int) -> BatchStats:
    ids = batch["input_ids"]
    if ids.numel() == 0:
        return BatchStats()
    flat = ids.reshape(-1)
    is_image = flat == image_token_id
    stats = BatchStats(slots=ids.numel())
    for a, b in sample_lengths(batch):
        image_tokens = int(is_image[a:b].sum())
        images = image_tokens // arch.image_tokens
        text = (b - a) - images * arch.image_tokens
        stats += BatchStats(1, b - a, 0, image_tokens, sequence_flops(arch, work, text, images).model)
    keep = batch.get("logits_to_keep")
    if isinstance(keep, torch.Tensor):  # chunked CE: lm_head only runs where a label is supervised
        skipped = ids.shape[0] * (ids.shape[1] - keep.numel())
        head_mult = 6 if work.llm_trained else 4
        stats.model_flops -= head_mult * arch.llm.lm_head_params * skipped
    return stats


@dataclass
class StepRecord:
    stats: BatchStats
    wait_s: float  # waiting for the step's batches (dataloader)
    step_s: float = 0.0  # wall time of the whole step, wait included


@dataclass
class Window:
    """Totals over some steps, and the rates they imply."""

    steps: int = 0
    stats: BatchStats = field(default_factory=BatchStats)
    seconds: float = 0.0
    wait_s: float = 0.0

    def rate(self, value: float) -> float:
        return value / self.seconds if self.seconds > 0 else 0.0

    @property
    def padding_fraction(self) -> float:
        return 1 - self.stats.tokens / self.stats.slots if self.stats.slots else 0.0

    @property
    def wait_fraction(self) -> float:
        return self.wait_s / self.seconds if self.seconds > 0 else 0.0


class StepMeter(TrainerCallback):
    """Counts every optimizer step; `window(first_step)` sums the steps from there on."""

    def __init__(self, arch: LlavaArch, work: Workload, image_token_id: int, peak_flops: float | None = None):
        self.arch, self.work, self.image_token_id = arch, work, image_token_id
        self.peak_flops = peak_flops  # for MFU in logs; None = not reported
        self.records: list[StepRecord] = []
        self._open: StepRecord | None = None
        self._last_end: float | None = None

    def fetched(self, batches: list[dict], start: float, end: float) -> None:
        stats = BatchStats()
        for batch in batches:
            stats += batch_stats(batch, self.arch, self.work, self.image_token_id)
        if self._last_end is None:
            self._last_end = start
        self._open = StepRecord(stats, end - start)

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self._open is not None:
            self._open.step_s = now - (self._last_end or now)
            self.records.append(self._open)
        self._open, self._last_end = None, now

    def window(self, first: int = 0, last: int | None = None) -> Window:
        chosen = self.records[first:last]
        out = Window(steps=len(chosen))
        for r in chosen:
            out.stats += r.stats
            out.seconds += r.step_s
            out.wait_s += r.wait_s
        return out

    def log_fields(self, last_steps: int) -> dict:
        """tokens/s, MFU, padding and dataloader wait over the newest `last_steps` steps (for log.jsonl)."""
        w = self.window(max(0, len(self.records) - last_steps))
        fields = {"tokens_per_s": round(w.rate(w.stats.tokens), 1), "padding": round(w.padding_fraction, 4),
                  "data_wait": round(w.wait_fraction, 4)}
        if self.peak_flops:
            fields["mfu"] = round(w.rate(w.stats.model_flops) / self.peak_flops, 4)
        return fields


def meter_for(model, config, peak_flops: float | None = None) -> StepMeter:
    """A StepMeter for a built model and its RunConfig (the FLOP model's workload from the config)."""
    from vistune.model.compose import llava_of
    from vistune.perf.arch import llava_arch_from_config

    llava = llava_of(model)
    work = Workload.of_run(config)
    return StepMeter(llava_arch_from_config(llava.config), work, int(llava.config.image_token_id), peak_flops)
