"""Padding fraction, per-sample FLOPs and MFU arithmetic of the StepMeter, on hand-made batches."""

from __future__ import annotations

import pytest
import torch

from vistune.perf.arch import LlavaArch, LLMArch, VisionArch
from vistune.perf.flops import Workload, mfu, sequence_flops
from vistune.perf.meter import StepMeter, batch_stats

ARCH = LlavaArch(VisionArch(64, 2, 128, 16, 8), LLMArch(64, 2, 176, 4, 4, 100))  # 4 image tokens
WORK = Workload(stage="instruct", method="lora", lora_r=8, gradient_checkpointing=False)
IMG = 99


def _padded():
    ids = torch.tensor([[IMG] * 4 + [5] * 6, [7] * 3 + [0] * 7])
    mask = torch.tensor([[1] * 10, [1] * 3 + [0] * 7])
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.clone()}


def test_padding_fraction_and_flops_of_a_padded_batch():
    stats = batch_stats(_padded(), ARCH, WORK, IMG)
    assert (stats.samples, stats.tokens, stats.slots, stats.image_tokens) == (2, 13, 20, 4)
    expected = sequence_flops(ARCH, WORK, 6, images=1).model + sequence_flops(ARCH, WORK, 3, images=0).model
    assert stats.model_flops == pytest.approx(expected)


def test_packed_batch_has_no_padding_and_the_same_flops():
    ids = torch.tensor([[IMG] * 4 + [5] * 6 + [7] * 3])
    packed = {"input_ids": ids, "labels": ids, "position_ids": torch.tensor([list(range(10)) + [0, 1, 2]])}
    stats = batch_stats(packed, ARCH, WORK, IMG)
    assert (stats.samples, stats.tokens, stats.slots) == (2, 13, 13)
    assert stats.model_flops == pytest.approx(batch_stats(_padded(), ARCH, WORK, IMG).model_flops)


def test_window_rates_and_mfu():
    meter = StepMeter(ARCH, WORK, IMG, peak_flops=1e9)
    for _ in range(3):
        meter.fetched([_padded()], 0.0, 0.5)
        meter.on_step_end(None, None, None)
    meter.records[1].step_s = meter.records[2].step_s = 2.0  # deterministic times for the arithmetic
    window = meter.window(1)
    assert window.steps == 2 and window.seconds == 4.0 and window.wait_s == 1.0
    assert window.padding_fraction == pytest.approx(7 / 20)
    assert window.wait_fraction == pytest.approx(0.25)
    assert window.rate(window.stats.tokens) == pytest.approx(26 / 4)
    assert mfu(window.stats.model_flops, window.seconds, 1e9) == pytest.approx(window.stats.model_flops / 4e9)
    fields = meter.log_fields(2)
    assert fields["mfu"] == round(window.rate(window.stats.model_flops) / 1e9, 4)
    assert set(fields) == {"tokens_per_s", "padding", "data_wait", "mfu"}


def test_chunked_ce_batches_count_lm_head_only_where_kept():
    from vistune.train.loop.losses import supervised_positions

    batch = _padded()
    batch["labels"] = torch.full_like(batch["input_ids"], -100)
    batch["labels"][0, 8:] = 5
    batch["logits_to_keep"] = supervised_positions(batch["labels"])
    assert batch["logits_to_keep"].tolist() == [7, 8]
    full = batch_stats(_padded(), ARCH, WORK, IMG).model_flops
    kept = batch_stats(batch, ARCH, WORK, IMG).model_flops
    assert full - kept == pytest.approx(4 * ARCH.llm.lm_head_params * 2 * (10 - 2))


def test_variants_and_ratios():
    from vistune.bench.report import format_table, ratios
    from vistune.bench.runner import BenchResult, Measurement, variants_from
    from vistune.perf.peak import Peak

    variants = variants_from(["data.packing=false,true", "optim.cross_entropy=default,chunked"])
    assert [v.name for v in variants][:2] == ["data.packing=false optim.cross_entropy=default",
                                              "data.packing=false optim.cross_entropy=chunked"]
    assert len(variants) == 4
    two = variants_from(["data.packing=false,true"])
    runs = [Measurement(v.name, r, 4, 1.0, s, s * 100, s * 10, 0.1, 0.01, 100.0, s * 1e9, s / 10)
            for r, pair in enumerate([(1.0, 1.5), (2.0, 2.6)]) for v, s in zip(two, pair)]
    result = BenchResult("x.yaml", two, Peak(1e10, "test"), runs)
    r = ratios(result)["data.packing=true"]["samples_per_s"]
    assert (r["min"], r["max"]) == (pytest.approx(1.3), pytest.approx(1.5))
    assert "data.packing=true" in format_table(result)
