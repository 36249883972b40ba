"""Step-level supervision guard: a step with no supervised token (here: every image of its batch is corrupt, found
only when loaded) is skipped with no update, its 0 never reaches the logged loss, and log.jsonl counts it."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from transformers import TrainerCallback

from tests.train.conftest import TINY, tiny_overrides
from tests.train.in_order import use_file_order
from vistune.train.loop.supervision import SupervisionGuard, supervised_tokens
from vistune.train.run.config import load_config
from vistune.train.stages.engine import train


class Snapshots(TrainerCallback):
    """Trainable weights at the start and after every optimizer step, and the optimizer's state size."""

    def __init__(self):
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.optimizer_states: dict[int, int] = {}

    def _take(self, step, model, optimizer=None):
        self.weights[step] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        if optimizer is not None:
            self.optimizer_states[step] = sum(len(s) for s in optimizer.state.values())

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._take(0, model)

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._take(state.global_step, model, optimizer)


@pytest.fixture()
def dropped_first(shapes, tmp_path):
    """Two records whose image is corrupt (tokenised fine, dropped when loaded), then two good ones."""
    records = [r for r in json.loads((shapes / "small.json").read_text()) if "image" in r]
    shutil.copytree(shapes, tmp_path / "data")
    (tmp_path / "data" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    bad = [{**r, "id": f"bad-{i}", "image": "corrupt.png"} for i, r in enumerate(records[:2])]
    (tmp_path / "data" / "guard.json").write_text(json.dumps(bad + records[2:4]))
    return tmp_path / "data"


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("batch, accum", [(2, 1), (1, 2)])
def test_a_step_without_supervised_tokens_is_skipped_and_counted(batch, accum, dropped_first, tmp_path,
                                                                   monkeypatch, caplog):
    use_file_order(monkeypatch)
    out = tmp_path / "run"
    snaps = Snapshots()
    config = load_config(TINY / "instruct_lora.yaml", tiny_overrides(dropped_first, out, "guard.json", **{
        "model.projector": "null", "optim.max_steps": 2, "save_steps": 0, "optim.per_device_batch_size": batch,
        "optim.grad_accum": accum, "optim.warmup_ratio": 0, "lora.dropout": 0}))
    with caplog.at_level("WARNING", logger="vistune.train.loop.supervision"):
        result = train(config, callbacks=[snaps])

    assert result.status == "done" and result.global_step == 2
    assert "optimizer step 1 skipped" in caplog.text and "every sample was dropped" in caplog.text
    # step 1: no weight moved and the optimizer holds no state (no zero-gradient Adam update either)
    for name, before in snaps.weights[0].items():
        assert torch.equal(snaps.weights[1][name], before), name
    assert snaps.optimizer_states[1] == 0
    # step 2 trained on the good records
    assert any(not torch.equal(snaps.weights[2][n], w) for n, w in snaps.weights[1].items())
    first, second = _log(out)
    assert first["step"] == 1 and first["skipped_steps"] == 1 and "loss" not in first
    assert second["step"] == 2 and second["skipped_steps"] == 0
    assert math.isfinite(second["loss"]) and second["loss"] > 0.1
    skipped = [json.loads(line)["id"] for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert sorted(skipped) == ["bad-0", "bad-1"]


def test_supervised_tokens_counts_what_the_shifted_loss_reads():
    labels = torch.tensor([[5, 6, -100, 7], [-100, -100, -100, -100]])
    assert supervised_tokens([{"labels": labels}]) == 2  # position 0 is never predicted
    assert supervised_tokens([{"labels": torch.zeros((0, 0), dtype=torch.long)}, {}]) == 0


def test_logged_loss_leaves_out_the_skipped_steps():
    guard = SupervisionGuard()
    guard.check_window([{"labels": torch.tensor([[1, 2]])}], "cpu", 1, step=0)  # trains
    guard.check_window([{"labels": torch.full((1, 2), -100)}], "cpu", 1, step=1)  # skipped
    # the Trainer's mean over 2 steps is (2.0 + 0) / 2; the trained step's loss was 2.0
    assert guard.fix_logs({"loss": 1.0, "grad_norm": 0.5}, global_step=2) == {
        "loss": 2.0, "grad_norm": 0.5, "skipped_steps": 1}
    guard.check_window([{"labels": torch.full((1, 2), -100)}], "cpu", 1, step=2)
    assert guard.fix_logs({"loss": 0.0, "grad_norm": 0.0}, global_step=3) == {"skipped_steps": 1}
