"""Evaluation while training: the run config's `eval:` entries, run on the in-memory model every N steps.

Each entry goes through vistune.eval's own runner (the prompts, generation and scoring of `vistune eval run`), so
the numbers logged after the last step equal an `eval run` on the saved model. Metrics reach log.jsonl and
report_to as `eval/<name>/<metric>` through Trainer.log; predictions stay in <output_dir>/eval/<name>/step-<N>/.
Rank 0 evaluates while the other ranks wait at a barrier. Under ZeRO-3 every forward gathers weights from all
ranks, so there every rank asks the same questions in lockstep (HF generate's synced_gpus, on by default under
ZeRO-3) and only rank 0 keeps what it wrote.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from vistune.train.run.config import EvalConfig

log = logging.getLogger(__name__)

EVAL_DIR = "eval"


def due(entry: EvalConfig, step: int, max_steps: int) -> bool:
    """Whether `entry` runs after optimizer step `step`: every `every` steps, and after the last one."""
    return step == max_steps or (entry.every > 0 and step % entry.every == 0)


def eval_run_config(entry: EvalConfig, out: Path):
    """The `vistune eval run` configuration an entry stands for (model and template come from memory)."""
    from vistune.eval import EvalRunConfig, GenerationSettings

    generation = GenerationSettings(max_new_tokens=entry.max_new_tokens, temperature=entry.temperature,
                                    top_p=entry.top_p, batch_size=entry.batch_size)
    return EvalRunConfig(model="(in memory)", benchmark=entry.benchmark, data=entry.data, out=str(out),
                         image_root=entry.image_root, limit=entry.limit, generation=generation)


class LiveEvalCallback(TrainerCallback):
    """Runs the due `eval:` entries at step ends; `trainer` must be set before training (for Trainer.log)."""

    def __init__(self, entries: list[EvalConfig], processor, template: str, output_dir: str | Path, aspect: str):
        self.entries = entries
        self.processor = processor
        self.template = template
        self.root = Path(output_dir) / EVAL_DIR
        self.aspect = aspect
        self.trainer = None  # the VistuneTrainer whose log() sends metrics to log.jsonl and report_to

    def on_step_end(self, args, state, control, model=None, **kwargs):
        entries = [e for e in self.entries if due(e, state.global_step, state.max_steps)]
        if not entries:
            return
        from transformers.integrations import is_deepspeed_zero3_enabled

        main = state.is_world_process_zero
        lockstep = args.world_size > 1 and is_deepspeed_zero3_enabled()
        logs: dict[str, float] = {}
        if main or lockstep:
            was_training = model.training
            try:
                for entry in entries:
                    logs.update(self._evaluate(entry, model, state.global_step, keep=main))
            finally:
                model.train(was_training)
        if args.world_size > 1:
            torch.distributed.barrier()
        if main:
            should_log = control.should_log  # Trainer.log clears it: keep this step's loss line
            self.trainer.log(logs)
            control.should_log = should_log
        return control

    def _evaluate(self, entry: EvalConfig, model, step: int, keep: bool) -> dict[str, float]:
        from vistune.eval import run_eval

        out = self.root / entry.label / f"step-{step}"
        if keep and out.exists():
            shutil.rmtree(out)  # a resumed run re-evaluates this step from scratch
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="vistune-eval-") as scratch:
            config = eval_run_config(entry, out if keep else Path(scratch))
            config.aspect = self.aspect
            result = run_eval(config, model_bundle=(model, self.processor, self.template))
        seconds = time.perf_counter() - start
        prefix = f"eval/{entry.label}/"
        metrics = {prefix + k: float(v) for k, v in result["metrics"].items() if isinstance(v, (int, float))}
        metrics[prefix + "seconds"] = round(seconds, 3)
        if keep:
            log.info("step %d %s: %s", step, entry.label,
                     ", ".join(f"{k.removeprefix(prefix)} {v:.4g}" for k, v in metrics.items()))
        return metrics
