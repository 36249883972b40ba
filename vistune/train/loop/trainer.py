"""HF `Trainer`, changed only where LLaVA training needs it.

- the vision tower, the projector and the LLM get a parameter group each with its own learning rate
  (`vision_lr`, `projector_lr`, `llm_lr`); every logged step records each group's rate as the engine's optimizer
  holds it (`lr_vision`, `lr_projector`, `lr_llm`), so a rate dropped by DeepSpeed would show;
- a batch without images still runs the vision tower and projector, on a dummy image that contributes exactly
  zero (its tokens sit after every real token, masked), so every ZeRO-3 rank runs the same forward;
- an optimizer step whose batch holds no supervised token on any rank is skipped (no forward, backward or update),
  warned about and counted in the logs (`vistune.train.loop.supervision`); a batch whose samples were all dropped
  inside an otherwise supervised step contributes exactly zero instead of crashing the run;
- each step's batches are timed and counted by a `vistune.perf.meter.StepMeter` (`meter=`) for log.jsonl;
- a non-finite loss (agreed on by all ranks) stops the run before its backward, so the weights on disk are the
  last good ones;
- saving writes vistune's self-contained artifacts (LoRA-only adapter, projector, processor, base.json) and
  checkpoints become visible only once complete (staging dir + manifest + atomic rename).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from vistune.model.checkpoints.manifest import write_manifest
from vistune.model.compose import llava_of
from vistune.train.loop.supervision import SupervisionGuard
from vistune.train.saving import checkpoint as ckpt
from vistune.train.saving.artifacts import ADAPTER_DIR, save_artifacts

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN / inf; raised before the bad step's backward."""

    def __init__(self, step: int, loss: float, ids: list[str]):
        self.step, self.loss, self.ids = step, loss, ids
        shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
        super().__init__(
            f"loss became {loss} at optimizer step {step + 1} (batch ids on this rank: {shown or 'unknown'}); "
            f"lower optim.lr, enable optim.max_grad_norm, or check those records"
        )


class _GroupRates(TrainerCallback):
    """Reads each group's rate right after the optimizer steps, where Trainer reads its own `learning_rate`."""

    def __init__(self, trainer: VistuneTrainer):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.step_rates = self.trainer.group_learning_rates()


class VistuneTrainer(Trainer):
    def __init__(self, *args, module_lrs: dict[str, float | None] | None = None, run_files: dict | None = None,
                 train_sampler_fn=None, meter=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.meter = meter  # a vistune.perf.meter.StepMeter, or None
        self.module_lrs = {k: v for k, v in (module_lrs or {}).items() if v is not None}  # group -> lr
        self.step_rates: dict[str, float] = {}  # each group's rate in the last optimizer step (logged)
        self.add_callback(_GroupRates(self))
        self.run_files = run_files or {}  # processor, base (dict), config_yaml: what every save writes
        self.train_sampler_fn = train_sampler_fn
        self._staging_root: str | None = None
        self.nonfinite: NonFiniteLoss | None = None
        self.supervision = SupervisionGuard()

    # ---- optimisation -------------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        """Trainer's AdamW, one parameter group per (module, decay): vision, projector, llm, each at its own lr
        (module_lrs; optim.lr where unset). Each group carries its module's "name" for the logs."""
        from vistune.model.policy import LR_GROUPS, component_of

        if self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[str, bool], list] = {}
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                groups.setdefault((LR_GROUPS[component_of(name)], name in decay), []).append(param)
        param_groups = [{"params": params, "weight_decay": self.args.weight_decay if decays else 0.0,
                         "lr": self.module_lrs.get(module, self.args.learning_rate), "name": module}
                        for (module, decays), params in sorted(groups.items())]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def group_learning_rates(self) -> dict[str, float]:
        """{"lr_vision": ..., "lr_projector": ..., "lr_llm": ...} read from the optimizer the engine steps (under
        DeepSpeed, the ZeRO optimizer inside the engine)."""
        engine_optimizer = getattr(self.model_wrapped, "optimizer", None) if self.is_deepspeed_enabled else None
        optimizer = engine_optimizer or self.optimizer
        rates: dict[str, float] = {}
        for group in getattr(optimizer, "param_groups", []):
            if "name" in group:
                rates[f"lr_{group['name']}"] = float(group["lr"])
        return rates

    def get_train_dataloader(self):
        """A stream that splits itself across ranks and workers gets its own loader (accelerate would make every
        rank read every sample); everything else goes through Trainer's."""
        dataset = self.train_dataset
        if not getattr(dataset, "shards_itself", False):
            return super().get_train_dataloader()
        return dataset.loader(self.data_collator, batch_size=self._train_batch_size,
                              num_workers=self.args.dataloader_num_workers, rank=self.args.process_index,
                              world_size=self.args.world_size)

    def _get_train_sampler(self, train_dataset=None):
        if self.train_sampler_fn is not None:
            return self.train_sampler_fn(self.args)
        return super()._get_train_sampler(train_dataset)

    # ---- batches: meter and supervision guard ------------------------------------------------------------------------------
    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Trainer's accumulation window (timed and counted by the meter), plus the all-rank decision whether it
        holds any supervised token."""
        start = time.perf_counter()
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.meter is not None:
            self.meter.fetched(batches, start, time.perf_counter())
        skip = self.supervision.check_window(batches, self.args.device, self.args.world_size, self.state.global_step)
        scheduler = getattr(self.model_wrapped, "lr_scheduler", None) if self.is_deepspeed_enabled else None
        if skip and scheduler is not None:  # DeepSpeed steps its scheduler only inside backward: keep its place
            scheduler.step()
        return batches, num_items

    def training_step(self, model, inputs, num_items_in_batch=None):
        """No forward and no backward for a window without supervised tokens (all ranks agree): no gradient
        exists, so the optimizer step that follows leaves the weights and their moments untouched."""
        if self.supervision.skip_current:
            return torch.zeros((), device=self.args.device)
        return super().training_step(model, inputs, num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs or "learning_rate" in logs:
            logs = {**logs, **self.step_rates}
        super().log(self.supervision.fix_logs(logs, self.state.global_step), start_time)

    # ---- loss -----------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        ids = inputs.pop("ids", None) or []
        if inputs["input_ids"].numel() == 0:
            return self._empty_batch_loss(model, inputs, return_outputs)
        if inputs.get("pixel_values") is None:
            inputs.pop("pixel_values", None)
            inputs = self._text_only_inputs(inputs)
        loss, outputs = self.loss_and_outputs(model, inputs, num_items_in_batch)
        self._check_finite(loss, [str(i) for i in ids])
        return (loss, outputs) if return_outputs else loss

    def loss_and_outputs(self, model, inputs: dict, num_items_in_batch=None):
        """(loss, model outputs or None) of the wrapped trainer: the one seam a stage with its own loss overrides."""
        return super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)

    def _empty_batch_loss(self, model, inputs: dict, return_outputs: bool):
        """Every sample of the batch was skipped (e.g. all images failed): a one-token forward through every
        module (so ZeRO-3 ranks stay in step) whose loss is exactly zero, instead of a crash on a 0 x 0 batch."""
        device = inputs["input_ids"].device
        pad = llava_of(self.model).config.text_config.pad_token_id or 0
        one = {"input_ids": torch.full((1, 1), pad, dtype=torch.long, device=device),
               "attention_mask": torch.ones((1, 1), dtype=torch.long, device=device)}
        outputs = model(**self._text_only_inputs(one))
        loss = outputs.logits.float().sum() * 0.0
        return (loss, outputs) if return_outputs else loss

    def _text_only_inputs(self, inputs: dict) -> dict:
        """A text-only batch as an image batch whose one image cannot matter: a zero image whose tokens are appended
        after every real token, masked out of attention and labels. Under a causal LM nothing real attends to
        them and no loss reads them, so loss and gradients are exactly the text-only ones, while every rank runs
        the very same forward (embed -> vision tower -> projector -> LLM) and ZeRO-3 collectives stay in step."""
        llava = llava_of(self.model)
        cfg = llava.config
        ids = inputs["input_ids"]
        image_inputs = None
        if cfg.model_type == "llava":
            n = int(cfg.image_seq_length)
        else:  # AnyRes: a placeholder image through the arch's own image processor, with its own token count
            from vistune.data_prep.images.inputs import placeholder_image

            image_inputs, n = placeholder_image(self.run_files["processor"])
        pad = cfg.text_config.pad_token_id if cfg.text_config.pad_token_id is not None else 0
        extra = torch.full((ids.shape[0], n), pad, dtype=ids.dtype, device=ids.device)
        extra[0] = cfg.image_token_id
        out = {**inputs, "input_ids": torch.cat([ids, extra], dim=1)}
        mask = inputs.get("attention_mask")
        if mask is not None:
            out["attention_mask"] = torch.cat([mask, torch.zeros_like(extra, dtype=mask.dtype)], dim=1)
        positions = inputs.get("position_ids")
        if positions is not None:  # a packed row: the dummy image's tokens are a sample of their own
            dummy = torch.arange(n, dtype=positions.dtype, device=ids.device).expand(ids.shape[0], n)
            out["position_ids"] = torch.cat([positions, dummy], dim=1)
        labels = inputs.get("labels")
        if labels is not None:
            out["labels"] = torch.cat([labels, torch.full_like(extra, -100, dtype=labels.dtype)], dim=1)
        scored = inputs.get("completion_mask")  # preference batches: the dummy image's tokens are never scored
        if scored is not None:
            out["completion_mask"] = torch.cat([scored, torch.zeros_like(extra, dtype=scored.dtype)], dim=1)
        vcfg = cfg.vision_config
        tower = llava.model.vision_tower
        dtype = next(tower.parameters()).dtype
        dtype = dtype if dtype.is_floating_point else llava.model.multi_modal_projector.linear_1.weight.dtype
        if image_inputs is not None:
            out.update({k: v.to(ids.device) for k, v in image_inputs.items()})
            out["pixel_values"] = out["pixel_values"].to(dtype)
            return out
        out["pixel_values"] = torch.zeros(1, int(getattr(vcfg, "num_channels", 3)), int(vcfg.image_size),
                                          int(vcfg.image_size), dtype=dtype, device=ids.device)
        return out

    def _check_finite(self, loss: torch.Tensor, ids: list[str]) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=loss.device)
        if self.args.world_size > 1:
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        if bad.item() > 0:
            value = loss.detach().float().item()
            self.nonfinite = NonFiniteLoss(self.state.global_step, value if not math.isfinite(value) else float("nan"), ids)
            raise self.nonfinite

    # ---- saving ---------------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """vistune's artifacts instead of Trainer's adapter-only (projector-less) save."""
        out = output_dir or self.args.output_dir
        save_artifacts(self.model, out, processor=self.run_files["processor"], base=self.run_files["base"],
                       config_yaml=self.run_files["config_yaml"], is_main=self.args.should_save)

    def _get_output_dir(self, trial):
        return self._staging_root or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """Trainer's checkpoint (weights, optimizer, scheduler, RNG, state), written where resume cannot see it
        until it is complete."""
        root = Path(self.args.output_dir)
        name = f"checkpoint-{self.state.global_step}"
        stage = ckpt.staging_dir(root)
        if self.args.should_save:
            staged = stage / name
            if staged.exists():
                import shutil

                shutil.rmtree(staged)
            stage.mkdir(parents=True, exist_ok=True)
        self._barrier()
        self._staging_root = str(stage)
        try:
            super()._save_checkpoint(model, trial)
            self._barrier()
            if self.args.should_save:
                write_manifest(stage / name, extra={"base": self.run_files["base"], "step": self.state.global_step})
                ckpt.publish(stage / name, root / name)
        except Exception as err:  # noqa: BLE001 - OSError, or a library's own error for ENOSPC (safetensors)
            raise self._save_failed(stage / name, err) from err
        finally:
            self._staging_root = None
        if self.args.should_save:
            ckpt.rotate(root, self.run_files.get("save_total_limit", 2))
            log.info("saved complete checkpoint %s", root / name)
        self._barrier()

    def _save_failed(self, staged: Path, err: Exception) -> ckpt.CheckpointSaveError:
        """Frees what the failed save wrote (it is never visible to resume) and says which checkpoint is safe."""
        import shutil

        shutil.rmtree(staged, ignore_errors=True)
        last = ckpt.latest_checkpoint(self.args.output_dir)
        message = (f"saving checkpoint-{self.state.global_step} failed: {err}. "
                   + (f"The last complete checkpoint {last} is untouched; " if last else "No complete checkpoint "
                      "exists yet; ")
                   + "free space (or fix the cause) and rerun with resume=auto.")
        log.error(message)
        return ckpt.CheckpointSaveError(message)

    def _barrier(self) -> None:
        if self.args.world_size > 1:
            torch.distributed.barrier()

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Loads vistune's checkpoint layout (adapter/ + projector, or full weights) without DeepSpeed."""
        from vistune.model.checkpoints.load import load_weights_into

        load_weights_into(model or self.model, Path(resume_from_checkpoint))
        log.info("loaded weights from %s", resume_from_checkpoint)


def adapter_dir(directory: str | Path) -> Path:
    return Path(directory) / ADAPTER_DIR
