"""Trainer callbacks: the per-step JSONL log that later plots read, save-and-stop on SIGTERM / SIGINT, and
gradient checkpointing for only some decoder layers.

A signal only raises a flag; the next step boundary (agreed on by all ranks) saves a complete checkpoint and
ends the run cleanly, so `resume: auto` continues exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

log = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"
_KEEP = ("loss", "learning_rate", "grad_norm", "epoch", "skipped_steps")  # skipped_steps: vistune.train.loop.supervision
# the prefer stage's metrics, as TRL names them (implicit rewards = beta * policy / reference log-ratio; for the
# reference-free ORPO / SimPO beta * mean token log-prob), and the NLL term of ORPO / SimPO's loss
PREFERENCE_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                   "logps/rejected", "nll_loss")
# the rl stage's metrics, as TRL's GRPOTrainer names them: the weighted reward, each reward function's mean / std
# (rewards/<name>/mean), completion lengths and the share cut at max_completion_length, KL to the reference (beta
# > 0), token entropy and the share of tokens whose importance ratio was clipped; with vLLM rollouts, how far vLLM's
# sampling log-probs are from the policy's (sampling/sampling_logp_difference/*) and the importance-sampling ratios
RL_KEYS = ("reward", "reward_std", "frac_reward_zero_std", "kl", "entropy", "completions/mean_length",
           "completions/clipped_ratio", "clip_ratio/region_mean", "clip_ratio/low_mean", "clip_ratio/high_mean")
RL_PREFIXES = ("rewards/", "sampling/")


class JsonlLogCallback(TrainerCallback):
    """One JSON line per logging event: step, loss, lr, grad_norm, samples_per_s, skipped_steps, time (no loss
    when every step of the interval was skipped for lack of supervised tokens); and one line per evaluation while
    training: step, eval/<name>/<metric>..., time."""

    def __init__(self, path: str | Path, global_batch: int, meter=None):
        self.path = Path(path)
        self.global_batch = global_batch
        self.meter = meter  # a vistune.perf.meter.StepMeter: adds tokens_per_s, mfu, padding, data_wait
        self._last_time: float | None = None
        self._last_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time, self._last_step = time.perf_counter(), state.global_step
        if state.is_world_process_zero and self.path.exists() and state.global_step > 0:
            self._truncate_after(state.global_step)  # a resumed run rewrites the steps after its checkpoint

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        evals = {k: _num(v) for k, v in logs.items() if k.startswith("eval/")}  # vistune.train.stages.live_eval
        if evals:
            self._write({"step": state.global_step, **evals, "time": round(time.time(), 3)})
        if not ("loss" in logs or "skipped_steps" in logs):
            return
        now = time.perf_counter()
        steps = state.global_step - self._last_step
        elapsed = now - (self._last_time or now)
        entry = {"step": state.global_step, **{k: _num(v) for k, v in logs.items()
                                               if k in _KEEP + PREFERENCE_KEYS + RL_KEYS or k.startswith(RL_PREFIXES)}}
        entry["lr"] = entry.pop("learning_rate", None)
        entry.update({k: _num(v) for k, v in logs.items() if k.startswith("lr_")})  # each parameter group's rate
        entry["samples_per_s"] = round(steps * self.global_batch / elapsed, 3) if elapsed > 0 and steps else None
        if self.meter is not None and steps:
            entry.update(self.meter.log_fields(steps))
        entry["time"] = round(time.time(), 3)
        self._last_time, self._last_step = now, state.global_step
        self._write(entry)

    def _write(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _truncate_after(self, step: int) -> None:
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))


def _num(value):
    if isinstance(value, torch.Tensor):
        value = value.item()
    return float(value) if isinstance(value, (int, float)) else value


class SignalCallback(TrainerCallback):
    """SIGTERM / SIGINT -> save a checkpoint at the next step boundary and stop."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def install(self) -> SignalCallback:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:  # a second signal: give up on the clean stop
            self.uninstall()
            raise KeyboardInterrupt
        self.received = signum
        log.warning("received %s: saving a checkpoint at the end of this step, then stopping",
                    signal.Signals(signum).name)

    def on_step_end(self, args, state, control, **kwargs):
        flag = torch.tensor([1.0 if self.received is not None else 0.0], device=args.device)
        if args.world_size > 1:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() > 0:
            if self.received is None:
                self.received = signal.SIGTERM.value
            control.should_save = True
            control.should_training_stop = True
        return control


class PartialCheckpointing(TrainerCallback):
    """`optim.checkpoint_layers: N`: only the first N decoder layers of the LLM recompute in backward.

    HF Trainer turns checkpointing on for every layer before training starts (each transformers decoder layer
    carries a `gradient_checkpointing` flag); this turns it back off from layer N on, so the other layers keep
    their activations and skip the recompute."""

    def __init__(self, layers: int):
        self.layers = layers

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from vistune.model.compose import llava_of

        decoder = llava_of(model).model.language_model.layers
        for i, layer in enumerate(decoder):
            layer.gradient_checkpointing = i < self.layers
