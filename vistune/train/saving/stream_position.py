"""The stream position in a checkpoint: which epoch, and how many of its batches were trained.

Saved in trainer_state.json (a stateful TrainerCallback) with the settings it depends on; on resume the stream
dataset yields those batches as empty placeholders, so the run continues with exactly the next samples.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState


class StreamPosition(TrainerCallback, ExportableState):
    """Records (epoch, batches trained in it, seed, world size, batch size) at every save."""

    def __init__(self, batches_per_epoch: int, grad_accum: int, seed: int, world_size: int, batch_size: int):
        self.batches_per_epoch, self.grad_accum = batches_per_epoch, grad_accum
        self.settings = {"seed": seed, "world_size": world_size, "batch_size": batch_size}

    def position(self, global_step: int) -> dict:
        """Trainer's own arithmetic for where a resumed run starts (epochs_trained, steps in the epoch)."""
        per_epoch = max(self.batches_per_epoch // self.grad_accum + int(self.batches_per_epoch % self.grad_accum > 0), 1)
        return {"epoch": global_step // per_epoch, "batches": global_step % per_epoch * self.grad_accum}

    def on_step_end(self, args, state, control, **kwargs):
        self._step = state.global_step  # state() is asked for during the save that follows this step

    def state(self) -> dict:
        step = getattr(self, "_step", 0)
        return {"args": {}, "attributes": {**self.position(step), **self.settings, "global_step": step}}


def read_position(checkpoint: str | Path) -> dict | None:
    """The stream position saved in a checkpoint, or None (not a stream run)."""
    path = Path(checkpoint) / "trainer_state.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text()).get("stateful_callbacks", {}).get("StreamPosition")
    return saved["attributes"] if saved else None


def resume_stream(dataset, checkpoint: str | Path, position: StreamPosition) -> dict:
    """Points `dataset` at the checkpoint's stream position; refuses settings that would change the order."""
    saved = read_position(checkpoint)
    if saved is None:
        raise ValueError(f"{checkpoint}: no stream position in trainer_state.json (not saved by a stream run)")
    changed = {k: (saved.get(k), v) for k, v in position.settings.items() if saved.get(k) != v}
    if changed:
        detail = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        raise ValueError(f"{checkpoint}: the stream cannot resume exactly with changed settings ({detail}); "
                         "resume with the same ones, or start the stream afresh (resume=none)")
    dataset.resume_at(saved["epoch"], saved["batches"])
    return saved
