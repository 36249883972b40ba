"""`vistune env` and the start-up checks that fail a run within seconds when the machine lacks something.

bf16 on a CPU is judged by measured speed, not by CPU flags: where the CPU runs bf16 natively (AVX512-BF16 / AMX,
as on the CI machines at the time of writing) a bf16 config rightly passes, so the fail-fast path is tested with an
emulating CPU's measured ratio put in place of the measurement."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vistune.train.run import preflight
from vistune.train.run.config import RunConfig


def _config(**optim) -> RunConfig:
    cfg = RunConfig()
    cfg.data.path = "x.json"
    cfg.model.dtype = "float32"
    cfg.optim.bf16 = False
    cfg.optim.tf32 = False
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    return cfg


def test_env_command_reports_versions_devices_and_support():
    out = subprocess.run([sys.executable, "-m", "vistune.cli", "env", "--json"], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    for name in ("torch", "transformers", "peft", "accelerate", "deepspeed", "bitsandbytes"):
        assert report["packages"][name], name
    assert report["devices"] and isinstance(report["bf16"], bool) and isinstance(report["tf32"], bool)
    assert report["attention"] in ("sdpa", "flash_attention_2")


def test_fp32_cpu_config_passes():
    assert preflight.check_config(_config()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only checks")
def test_tf32_on_cpu_fails_fast_with_the_fix():
    with pytest.raises(preflight.PreflightError, match=r"tf32.*\n.*fix: set optim.tf32=false"):
        preflight.preflight(_config(tf32=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only checks")
def test_bf16_on_this_cpu_is_judged_by_measured_speed():
    """bf16 passes only where this CPU runs bf16 matmuls at a useful speed (measured, not read off flags)."""
    ratio = preflight.cpu_bf16_speed_ratio()
    problems = preflight.check_config(_config(bf16=True))
    if ratio < preflight.BF16_MIN_SPEED_RATIO:
        assert any("bf16" in p.what and "optim.bf16=false" in p.fix for p in problems)
    else:
        assert problems == []
    # The same measured ratio judged against a bar above it must fail, with the fix in the message.
    strict = preflight.check_config(_config(bf16=True), bf16_min_speed_ratio=ratio * 2 + 1)
    assert [p.fix for p in strict] == ["set optim.bf16=false model.dtype=float32"]


def test_flash_attention_without_the_package_fails(monkeypatch):
    cfg = _config()
    cfg.model.attn_implementation = "flash_attention_2"
    if preflight.flash_attention_available():
        pytest.skip("flash-attn is installed here")
    with pytest.raises(preflight.PreflightError, match="flash_attention_2 requested"):
        preflight.preflight(cfg)


def test_qlora_passes_where_bitsandbytes_quantises():
    cfg = _config()
    cfg.stage, cfg.method = "instruct", "qlora"
    assert preflight.bitsandbytes_backend() is not None  # bitsandbytes 0.50 quantises on CPU
    assert preflight.check_config(cfg) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU-only checks")
def test_vistune_train_with_bf16_on_a_cpu_that_emulates_it_fails_fast(monkeypatch, tmp_path, capsys):
    """`vistune train` on a bf16 config, on a CPU measured to emulate bf16 (the measurement is replaced by an
    emulating CPU's ratio: CI's CPUs may well have native bf16, where the run rightly starts): exit 2 within
    seconds, before any weight is loaded, with the setting to change in the message."""
    import time
    from pathlib import Path

    import vistune.train.stages.engine as engine
    from vistune.cli import main

    monkeypatch.setattr(preflight, "cpu_bf16_speed_ratio", lambda: 0.004)  # e.g. 250x slower than fp32

    def no_loading(config, skips):
        raise AssertionError("weights were loaded before the start-up checks")

    monkeypatch.setattr(engine, "build_run", no_loading)
    config = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "instruct_lora.yaml"
    start = time.perf_counter()
    code = main(["train", str(config), "optim.bf16=true", "model.dtype=bfloat16", "data.path=x.json",
                 f"output_dir={tmp_path}"])
    assert code == 2 and time.perf_counter() - start < 10
    err = capsys.readouterr().err
    assert "bf16 requested but this CPU emulates bf16" in err
    assert "fix: set optim.bf16=false model.dtype=float32" in err


def test_the_bf16_speed_is_measured_once_per_process():
    """`vistune env` and the start-up check read the same measurement (a noisy second one could disagree)."""
    assert preflight.cpu_bf16_speed_ratio() == preflight.cpu_bf16_speed_ratio()
