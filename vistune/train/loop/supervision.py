"""Step-level supervision guard: an optimizer step with no supervised token is skipped, never trained as 0 or NaN.

A batch can hold no supervised token even after the data doctor's record checks (e.g. every sample of it failed to
load its image). Its loss is 0 / 0: a NaN that would stop the run, or a "zero" loss that still moves the weights
through the optimizer's momentum. The rule, per optimizer step (one gradient-accumulation window):

- the supervised tokens of the whole window are counted on every rank and summed across ranks (one all-reduce,
  before any forward), so all ranks take the same decision and ZeRO-3 collectives stay in step;
- count > 0: the window trains as usual; a micro-batch without supervised tokens inside it contributes exactly 0
  (the loss is a sum over supervised tokens divided by the window's count) and still runs forward / backward,
  so every rank runs the same modules;
- count == 0: no forward, no backward, no optimizer update (no gradient exists, so AdamW leaves every weight and
  its moments untouched). The step keeps its place in the step count and lr schedule, so `max_steps`, resume
  (which skips `global_step` windows of data) and the schedule stay aligned with the data. It is warned about and
  counted in `log.jsonl` as `skipped_steps`; its 0 never enters the logged loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from vistune import IGNORE_INDEX

log = logging.getLogger(__name__)


def supervised_tokens(batches: list[dict]) -> int:
    """Tokens a loss reads in these micro-batches (labels after the first position, not IGNORE_INDEX; for
    preference batches, the completion_mask tokens)."""
    total = 0
    for batch in batches:
        labels = batch.get("labels")
        scored = batch.get("completion_mask")  # preference batches score the replies marked here
        if labels is not None and labels.numel():
            total += int(labels[..., 1:].ne(IGNORE_INDEX).sum())
        elif scored is not None and scored.numel():
            total += int(scored[..., 1:].sum())
    return total


def global_sum(value: int, device, world_size: int) -> int:
    """`value` summed over all ranks (collective: every rank must call it)."""
    if world_size <= 1:
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return int(tensor.item())


@dataclass
class SupervisionGuard:
    """Decides, per accumulation window, whether the step trains; keeps the skipped-step counts for the logs."""

    skipped: int = 0  # steps skipped in this process's run so far
    skip_current: bool = False  # the window being trained now has no supervised token (on any rank)
    _logged_step: int = 0  # global step of the last log line
    _logged_skipped: int = 0  # `skipped` at the last log line
    _started: bool = False  # a window was seen: `_logged_step` holds the step this process started (resumed) at

    def check_window(self, batches: list[dict], device, world_size: int, step: int) -> bool:
        """Collective. True when the window (every micro-batch on every rank) has no supervised token."""
        if not self._started:
            self._started, self._logged_step = True, step
        count = global_sum(supervised_tokens(batches), device, world_size)
        self.skip_current = bool(batches) and count == 0
        if self.skip_current:
            self.skipped += 1
            ids = [str(i) for batch in batches for i in (batch.get("ids") or [])]
            shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
            log.warning("optimizer step %d skipped: its batch holds no supervised token on any rank (ids on this "
                        "rank: %s); the weights are not updated", step + 1, shown or "none: every sample was dropped")
        return self.skip_current

    def fix_logs(self, logs: dict, global_step: int) -> dict:
        """Adds `skipped_steps` (steps of this logging interval that were skipped) to a training log entry and
        takes their zeros out of its mean loss; an interval of skipped steps only has no loss at all."""
        if "loss" not in logs:
            return logs
        steps = max(global_step - self._logged_step, 1)
        skipped = self.skipped - self._logged_skipped
        self._logged_step, self._logged_skipped = global_step, self.skipped
        logs = {**logs, "skipped_steps": skipped}
        if skipped >= steps:
            logs.pop("loss")
            logs.pop("grad_norm", None)  # no gradient was computed
        elif skipped:
            logs["loss"] = logs["loss"] * steps / (steps - skipped)
        return logs
