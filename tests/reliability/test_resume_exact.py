"""Resume is exact: a run stopped mid-epoch and resumed (`resume: auto`) continues with the same losses, gradient
norms, learning rates and final weights as one that never stopped. That needs the model, optimizer, scheduler, RNG
(LoRA dropout) and data position (mid-epoch, several epochs, length-grouped sampler) all restored."""

from __future__ import annotations

import pytest
import torch
from rel_helpers import log_steps, stop_after, tiny_config
from safetensors.torch import load_file

STEPS, STOP = 8, 3  # 2 optimizer steps per epoch: the stop lands in the middle of epoch 2


def _config(clean, out, **extra):
    data, root = clean
    return tiny_config(data, root, out, **{
        "optim.max_steps": STEPS, "optim.per_device_batch_size": 2, "optim.grad_accum": 2, "save_steps": STOP,
        "lora.dropout": 0.1, "data.group_by_length": True, "optim.warmup_ratio": 2, **extra})


def _weights(out) -> dict[str, torch.Tensor]:
    return {**load_file(str(out / "adapter" / "adapter_model.safetensors")), **load_file(str(out / "projector.safetensors"))}


def test_an_interrupted_run_continues_identically(clean, tmp_path):
    from vistune.train.stages.engine import train

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert train(_config(clean, straight)).global_step == STEPS
    assert train(_config(clean, stopped), callbacks=[stop_after(STOP)]).global_step == STOP
    assert [s["step"] for s in log_steps(stopped)] == list(range(1, STOP + 1))
    assert train(_config(clean, stopped)).global_step == STEPS  # resume: auto -> checkpoint-3

    a, b = log_steps(straight), log_steps(stopped)
    assert [s["step"] for s in b] == list(range(1, STEPS + 1))
    for key in ("loss", "grad_norm", "lr", "epoch"):
        assert [s[key] for s in b] == pytest.approx([s[key] for s in a], rel=1e-6, abs=1e-9), key
    assert len({s["loss"] for s in a}) > 1  # the curve moves: an all-equal log would prove nothing
    wa, wb = _weights(straight), _weights(stopped)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-6, atol=1e-7, msg=name)


def test_resuming_a_finished_run_changes_nothing(clean, tmp_path):
    """`resume: auto` on a run whose newest checkpoint is its last step trains no further step."""
    from vistune.train.stages.engine import train

    out = tmp_path / "run"
    config = _config(clean, out, **{"optim.max_steps": 2, "save_steps": 2})
    assert train(config).global_step == 2
    before = _weights(out)
    assert train(config).global_step == 2
    assert [s["step"] for s in log_steps(out)] == [1, 2]
    for name, value in _weights(out).items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
