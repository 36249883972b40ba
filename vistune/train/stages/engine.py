"""One training run, start to finish: build, (resume), train, save. The whole loop is HF Trainer's.

`train(config)` runs the same under a single process, `deepspeed` and `accelerate launch`: the launcher sets the
process group up, TrainingArguments hands the DeepSpeed config to the Trainer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from vistune.model.checkpoints.manifest import MANIFEST, verify_manifest, write_manifest
from vistune.perf.meter import meter_for
from vistune.perf.peak import device_peak
from vistune.train.loop.callbacks import LOG_FILE, JsonlLogCallback, SignalCallback
from vistune.train.loop.trainer import NonFiniteLoss, VistuneTrainer
from vistune.train.run.build import build_run, length_sampler_fn, loss_function, training_callbacks
from vistune.train.run.config import RunConfig
from vistune.train.run.resolve import config_header
from vistune.train.saving import checkpoint as ckpt
from vistune.train.saving.artifacts import CONFIG_FILE, base_record
from vistune.train.stages.live_eval import EVAL_DIR

log = logging.getLogger(__name__)

SKIPPED_FILE = "skipped.jsonl"


class TrainingStopped(RuntimeError):
    """The run stopped early with its last good state saved; the message says where and why."""


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    status: str  # "done", or "interrupted" (a signal: a checkpoint was saved, rerun to resume)
    checkpoint: Path | None = None  # the checkpoint written on interruption
    model: object = None  # the trained model as it is in memory (PEFT-wrapped for lora / qlora)


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0)))


def _say(text: str) -> None:
    if _rank() == 0:
        print(text, flush=True)


def training_arguments(config: RunConfig, cls=None, **extra):
    """HF TrainingArguments for `config` (or `cls`, a subclass such as TRL's DPOConfig, with its own `extra` fields)."""
    from transformers import TrainingArguments

    o = config.optim
    return (cls or TrainingArguments)(
        output_dir=config.output_dir,
        per_device_train_batch_size=o.per_device_batch_size,
        gradient_accumulation_steps=o.grad_accum,
        learning_rate=o.lr,
        weight_decay=o.weight_decay,
        num_train_epochs=o.epochs,
        max_steps=o.max_steps,
        warmup_steps=o.warmup_ratio,
        lr_scheduler_type=o.scheduler,
        max_grad_norm=o.max_grad_norm,
        gradient_checkpointing=o.gradient_checkpointing is True,  # auto is resolved before (vistune.train.run.resolve)
        torch_compile=o.torch_compile,
        gradient_checkpointing_kwargs={"use_reentrant": False} if o.gradient_checkpointing is True else None,
        use_liger_kernel=o.liger is True,
        liger_kernel_config=liger_kernels(config) if o.liger is True else None,
        bf16=o.bf16,
        tf32=o.tf32 if o.tf32 else None,
        logging_steps=config.logging_steps,
        logging_nan_inf_filter=False,
        save_strategy="steps" if config.save_steps > 0 else "no",
        save_steps=config.save_steps if config.save_steps > 0 else 500,
        save_total_limit=None,  # vistune rotates, only among complete checkpoints
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=config.data.num_workers,
        deepspeed=config.deepspeed,
        report_to=[] if config.report_to == "none" else [config.report_to],
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
        # without a GPU, accelerate only goes multi-process (gloo) when told it is on CPU
        use_cpu=not torch.cuda.is_available(),
        **extra,
    )


def liger_kernels(config: RunConfig) -> dict:
    """Liger's kernels for the LLM: RMSNorm, SwiGLU, RoPE; its fused linear CE only for optim.cross_entropy=liger
    (chunked CE needs the logits it computes at supervised positions)."""
    fused = config.optim.cross_entropy == "liger"
    return {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False, "fused_linear_cross_entropy": fused}


class _Stage2:
    """align / instruct: HF Trainer's causal-LM loss with vistune's machinery."""

    build_run = staticmethod(build_run)

    @staticmethod
    def make_trainer(config: RunConfig, **kwargs) -> VistuneTrainer:
        return VistuneTrainer(
            compute_loss_func=loss_function(config),
            module_lrs=config.module_lrs(),
            train_sampler_fn=length_sampler_fn(config, kwargs["train_dataset"]),
            **kwargs,
        )


def _trl_stage(config: RunConfig):
    """The module of a stage built on a TRL trainer (prefer: vistune.train.stages.prefer, rl: vistune.train.stages.rl), else
    None (align / instruct: HF Trainer's causal-LM loss)."""
    if config.stage == "prefer":
        from vistune.train.stages import prefer

        return prefer
    if config.stage == "rl":
        from vistune.train.stages import rl

        return rl
    return None


def resolve_resume(config: RunConfig, is_main: bool, barrier) -> Path | None:
    """The checkpoint to resume from: auto = newest complete one (interrupted saves are cleared first)."""
    if config.resume == "none":
        return None
    if config.resume != "auto":
        path = Path(config.resume)
        verify_manifest(path, hashes=False)
        return path
    if is_main:
        for stale in ckpt.clear_stale(config.output_dir):
            log.warning("removed incomplete checkpoint %s (interrupted save)", stale)
    barrier()
    return ckpt.latest_checkpoint(config.output_dir)


def train(config: RunConfig, callbacks: list | None = None) -> TrainResult:
    """Runs `config` to the end (or to a signal); raises TrainingStopped on a non-finite loss.

    `callbacks` are extra `transformers.TrainerCallback`s (progress hooks, tests)."""
    from transformers import set_seed

    from vistune.data_prep import SkipLog
    from vistune.model import count_parameters, format_parameter_table
    from vistune.train.run.preflight import preflight

    out = Path(config.output_dir)
    _say("resolved config:\n" + config.to_yaml())
    preflight(config)  # fails within seconds when the machine lacks what the config asks for
    set_seed(config.seed)  # identical on every rank: ZeRO-3 partitions each rank's own copy
    skips = SkipLog()
    stage = _trl_stage(config)  # vistune.train.stages.prefer / vistune.train.stages.rl (TRL's trainers), else None
    built = (stage or _Stage2).build_run(config, skips)  # resolves the auto switches on the way
    model, processor, dataset, collator = built.model, built.processor, built.dataset, built.collator
    _say("trainable parameters:\n" + format_parameter_table(count_parameters(model)))
    _say(f"dataset: {len(dataset)} samples from {config.data.path}" + (f"; {skips.summary()}" if len(skips) else ""))
    for decision in built.decisions:
        _say(decision.line())
    config_yaml = config_header(built.decisions) + config.to_yaml()

    args = training_arguments(config, **(stage.trainer_arguments(config) if stage else {}))  # sets up the process group
    is_main = args.should_save
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(config_yaml)

    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    stream = _stream_position(config, dataset, args)
    signals = SignalCallback().install()
    # tokens/s and MFU in log.jsonl; rl's batches are prompt rows whose tokens are generated inside the step
    meter = meter_for(model, config, device_peak(quick=True).flops_per_s) if config.stage != "rl" else None
    live_eval = _live_eval(config, processor)
    trainer = (stage or _Stage2).make_trainer(
        config,
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        callbacks=[JsonlLogCallback(out / LOG_FILE, global_batch, meter), *([meter] if meter else []), signals, *training_callbacks(config),
                   *([stream] if stream else []), *live_eval, *(callbacks or [])],
        meter=meter,
        run_files={"processor": processor, "base": base_record(config, model), "config_yaml": config_yaml,
                   "save_total_limit": config.save_total_limit},
    )
    for callback in [*live_eval, *(callbacks or [])]:  # callbacks that ask for the trainer (a `trainer` attribute)
        if hasattr(callback, "trainer"):
            callback.trainer = trainer
    resume = resolve_resume(config, is_main, trainer._barrier)
    if resume:
        _say(f"resuming from {resume}")
        if stream:
            from vistune.train.saving.stream_position import resume_stream

            at = resume_stream(dataset, resume, stream)
            _say(f"stream: epoch {at['epoch']}, {at['batches']} batches already trained")
    elif is_main:
        (out / SKIPPED_FILE).unlink(missing_ok=True)  # a fresh run starts a fresh list
    trainer._barrier()
    skips.stream_to = out / SKIPPED_FILE  # image skips happen in DataLoader workers: they append as they go
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except NonFiniteLoss as err:
        saved = _save_last_good(trainer)
        raise TrainingStopped(f"{err}. The last good state (step {trainer.state.global_step}) is saved in "
                              f"{saved}; fix the cause and rerun with resume=auto.") from None
    except ckpt.CheckpointSaveError as err:
        raise TrainingStopped(str(err)) from err
    finally:
        signals.uninstall()
        if is_main:
            _finish_skip_log(skips, out / SKIPPED_FILE)

    step = trainer.state.global_step
    if signals.received is not None:
        latest = ckpt.latest_checkpoint(out)
        _say(f"stopped by signal after step {step}; checkpoint {latest}. Rerun the same command to resume.")
        return TrainResult(out, step, "interrupted", latest, trainer.model)
    _save_final(trainer, out, is_main)
    _say(f"done: {step} steps; outputs in {out}")
    return TrainResult(out, step, "done", model=trainer.model)


def _live_eval(config: RunConfig, processor) -> list:
    """The callback that runs the config's `eval:` entries while training (none when there are none)."""
    if not config.eval:
        return []
    from vistune.train.stages.live_eval import LiveEvalCallback

    return [LiveEvalCallback(config.eval, processor, config.template, config.output_dir, config.data.aspect)]


def _stream_position(config: RunConfig, dataset, args):
    """A StreamPosition callback for a self-sharding stream (None for the other datasets)."""
    if not getattr(dataset, "shards_itself", False):
        return None
    from vistune.train.saving.stream_position import StreamPosition

    batches = dataset.batches_per_epoch(args.world_size, args.per_device_train_batch_size)
    return StreamPosition(batches, args.gradient_accumulation_steps, config.seed, args.world_size,
                          args.per_device_train_batch_size)


def _finish_skip_log(skips, path: Path) -> None:
    """skipped.jsonl = every record skipped in this run (and the run it resumes), once each; counts on the console.

    The streamed file holds the workers' image skips (again every epoch) and the resumed run's; the reader's and
    tokeniser's skips are in memory. Best effort: a full disk must not hide the error that stopped the run."""
    from vistune.data_prep import Skip, SkipLog

    try:
        streamed = []
        for line in (path.read_text(encoding="utf-8").splitlines() if path.is_file() else []):
            try:
                streamed.append(Skip(**json.loads(line)))
            except (ValueError, TypeError):  # a line torn by a kill during its append
                continue
        merged, seen = SkipLog(), set()
        for skip in [*streamed, *skips]:
            key = (skip.id, skip.source, skip.index, skip.stage, skip.problem)
            if key not in seen:
                seen.add(key)
                merged.items.append(skip)
        if len(merged):
            merged.write_jsonl(path.with_name(path.name + ".tmp")).replace(path)
            _say(f"{merged.summary()}\nevery skipped record, with its reason: {path}")
    except OSError as err:
        log.error("could not write %s: %s", path, err)


def _save_last_good(trainer: VistuneTrainer) -> Path:
    root = Path(trainer.args.output_dir)
    final = root / f"checkpoint-{trainer.state.global_step}"
    if not ckpt.is_complete(final):
        trainer._save_checkpoint(trainer.model_wrapped, trial=None)
    return final


def _save_final(trainer: VistuneTrainer, out: Path, is_main: bool) -> None:
    """The run's own artifacts at the top of the output dir, then a manifest over them (not the checkpoints)."""
    if is_main:
        (out / MANIFEST).unlink(missing_ok=True)  # never let an old manifest vouch for files being rewritten
        adapter = out / "adapter"
        if adapter.exists():
            shutil.rmtree(adapter)
    trainer._barrier()
    trainer.save_model(str(out))
    trainer._barrier()
    if is_main:
        write_manifest(out, extra={"base": trainer.run_files["base"], "step": trainer.state.global_step},
                            skip=_not_artifact)


def _not_artifact(rel: str) -> bool:
    top = rel.split("/", 1)[0]
    return top.startswith(("checkpoint-", ".staging", ".old-", "runs")) or top in (LOG_FILE, SKIPPED_FILE, EVAL_DIR)
