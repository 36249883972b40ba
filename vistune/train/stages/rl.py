"""The rl stage: online RL with verifiable rewards (GRPO family) for a trained LLaVA, on TRL's GRPOTrainer.

TRL does the group-normalised advantages, the loss (`rl.loss_type`: grpo, dr_grpo, dapo, bnpo) and its metrics; the
rewards are vistune.train.loop.rewards'. The seam with TRL is `ImagePrompts`: rows arrive with their prompt already
tokenised by the stage-2 template (`prompt_ids`: vistune's rendering and image-token expansion, as `vistune eval`
asks questions) and an image path; every forward (rollout, policy, old and reference log-probs) gets the images
that vistune's transform (`data.aspect`, or AnyRes tiling with `image_sizes`) makes, one image per completion row.
TRL's own path (the processor's chat template and image processor) is never used. The transformers rollout samples
each completion from its own seeded stream (rollouts.py), so any process layout draws the same completions. With
LoRA / QLoRA TRL attaches the adapter and the reference (`rl.beta` > 0) is the network with the adapter disabled;
with full, TRL loads a frozen reference from the start's hub-layout copy; `rl.beta` = 0 needs no reference at all.
With `rl.use_vllm` TRL generates with vLLM in colocate mode from the same token ids and images, the engine loaded
from that copy and given the policy's weights under their hub names before every rollout.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from trl import GRPOConfig, GRPOTrainer

from vistune.model.compose import llava_of
from vistune.train.loop.trainer import VistuneTrainer
from vistune.train.run.config import ConfigError, RunConfig
from vistune.train.stages.rollouts import SeededSampling, rollout_seeds

log = logging.getLogger(__name__)
START_COPY = "start-model"  # <output_dir>/start-model: the start in the hub layout, for vLLM or the full reference


def trainer_arguments(config: RunConfig) -> dict:
    """The engine's training_arguments as TRL's GRPOConfig, with the rollout and loss fields of `rl.*`."""
    rl = config.rl
    return {"cls": GRPOConfig, "loss_type": rl.loss_type, "num_generations": rl.num_generations, "beta": rl.beta,
            "max_completion_length": rl.max_completion_length, "temperature": rl.temperature, "top_p": rl.top_p,
            "epsilon": rl.epsilon, "reward_weights": rl.reward_weights or None, "use_vllm": rl.use_vllm,
            "vllm_mode": "colocate", "vllm_gpu_memory_utilization": rl.vllm_gpu_memory_utilization,
            "log_completions": False, "shuffle_dataset": True}


def build_run(config: RunConfig, skips):
    """Model and prompt rows (no collator: TRL batches rows as they are). No packing (rows are generated), no
    Liger (TRL fuses its own log-prob head); checkpointing auto -> on."""
    from vistune.train.run.build import BuiltRun
    from vistune.train.stages.prefer import build_model

    if config.data.packing is True or config.optim.liger is True:
        raise ConfigError("stage rl supports neither data.packing nor optim.liger: set them to false")
    if config.rl.use_vllm and config.method == "qlora":
        raise ConfigError("stage rl with rl.use_vllm supports methods lora and full: vLLM would load the 4-bit start "
                          "model with its own bitsandbytes path, which vistune has not verified; use method lora, or "
                          "qlora without rl.use_vllm")
    config.data.packing, config.optim.liger = False, False
    if config.optim.gradient_checkpointing not in (True, False):
        config.optim.gradient_checkpointing = True
    model, processor = build_model(config)
    dataset = build_dataset(config, processor)
    return BuiltRun(model, processor, dataset, None, [])


def build_dataset(config: RunConfig, processor):
    """datasets.Dataset of prompt rows: id, prompt (the question text), prompt_ids, image_path, answer and the
    records' other fields (reward columns). Any unusable record or prompt is a ValueError naming it. The image
    tokens are expanded to the model's count for each image (AnyRes: from the image's size)."""
    from datasets import Dataset

    from vistune.data_prep import get_template, resolve_image_path
    from vistune.data_prep.batching.rl_prompts import load_rl_prompts
    from vistune.data_prep.images.inputs import image_size, image_transform
    from vistune.data_prep.records import RecordError
    from vistune.data_prep.text.tokenize import encode_prompt
    from vistune.model.anyres import is_anyres

    prompts = load_rl_prompts(config.data.path)
    template, tokenizer = get_template(config.template), processor.tokenizer
    image_root = Path(config.data.image_root or Path(config.data.path).parent)
    transform = image_transform(processor, config.data.aspect)
    # LLaVA-1.5 has one count for every image: no image is opened here; AnyRes counts from each image's size
    fixed = None if is_anyres(processor) else transform.token_counts([(0, 0)])
    columns = sorted({k for p in prompts for k, v in p.extra.items() if isinstance(v, (str, int, float, bool))})
    rows = []
    for p in prompts:
        where = f"{config.data.path}: record {p.id!r}"
        try:
            image = str(resolve_image_path(p.image, image_root))
            counts = fixed or transform.token_counts([image_size(p.image, image_root)])
        except RecordError as err:
            raise ValueError(f"{where}: {err}") from None
        ids = encode_prompt(template.prompt(p.record(), tokenizer), tokenizer, counts)
        if len(ids) + config.rl.max_completion_length > config.data.max_length:
            raise ValueError(f"{where}: the prompt takes {len(ids)} tokens; with rl.max_completion_length "
                             f"{config.rl.max_completion_length} it exceeds data.max_length {config.data.max_length}")
        rows.append({"id": p.id, "prompt": p.turns[-1].text, "prompt_ids": ids, "image_path": image,
                     "answer": p.answer, **{k: p.extra.get(k) for k in columns}})
    return Dataset.from_list(rows)


def write_start_copy(model, processor, out: Path) -> None:
    """The start model in the llava-hf layout, for the two things TRL loads from `model.name_or_path`: the
    colocated vLLM engine (rl.use_vllm) and, with method full and rl.beta > 0, the frozen reference. A run directory
    or a composed model is in transformers 5's in-memory layout, which vLLM does not read."""
    from vistune.train.saving.hub_layout import clean_config, write_hub_layout

    model.save_pretrained(out)
    processor.save_pretrained(out)
    write_hub_layout(out)
    clean_config(out)


def stop_token_ids(processor, template_name: str) -> list[int]:
    """The tokenizer's EOS and the template's end-of-turn token: where a completion ends."""
    from vistune.data_prep import get_template

    tokenizer = processor.tokenizer
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    piece = getattr(get_template(template_name), "end_of_turn", None)
    if piece:
        text = piece.replace("{eos}", tokenizer.eos_token or "").replace("{bos}", tokenizer.bos_token or "").strip()
        tok = tokenizer.convert_tokens_to_ids(text) if text else None
        if tok is not None and tok != tokenizer.unk_token_id and tok not in ids:
            ids.append(int(tok))
    return ids


class ImagePrompts:
    """The methods of TRL's GRPOTrainer that read prompts, for vistune's tokenised prompt rows with images."""

    image_transform = None  # vistune.data_prep.images.inputs.FixedTransform / AnyresTransform (set in make_trainer)
    _rollout_vision: dict | None = None  # pixel_values (+ image_sizes, AnyRes) of the generation batch being scored
    _rollout_images: list | None = None  # the same as PIL images after data.aspect's step (vLLM takes those)
    _rollout_ids: list[list[int]] | None = None  # the prompts' token ids
    _rollout_seeds: list[int] | None = None  # each row's sampling seed

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        """TRL's rollout + scoring, with this batch's images in vistune's transform; one image per row."""
        from PIL import Image

        images = []
        for row in inputs:
            with Image.open(row["image_path"]) as img:
                images.append(img.convert("RGB"))
        self._rollout_vision = self._vision_inputs(images)
        self._rollout_ids = [list(row["prompt_ids"]) for row in inputs]
        self._rollout_images = [[self.image_transform.geometry(img)] for img in images]
        self._rollout_seeds = self._seeds([str(row["id"]) for row in inputs])
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            vision, self._rollout_vision, self._rollout_images = self._rollout_vision, None, None
        output.update(vision)  # split and shuffled with the other rows by TRL
        return output

    def _vision_inputs(self, images: list) -> dict:
        """pixel_values (one image per row; AnyRes crops padded to the batch's most) and, AnyRes, image_sizes."""
        from vistune.data_prep.images.inputs import collate_images

        vision = collate_images([self.image_transform.encode([img]) for img in images])
        vision.pop("batch_num_images", None)  # OneVision: one image per row is its default
        dtype = next(llava_of(self.model).model.vision_tower.parameters()).dtype
        return {k: v.to(self.accelerator.device, dtype if v.is_floating_point() else None) for k, v in vision.items()}

    def _tokenize_prompts(self, prompts: list):
        """(prompt ids, images, multimodal fields) as TRL's generation wants them: vistune's ids and pixels."""
        return self._rollout_ids, None, dict(self._rollout_vision)

    def _seeds(self, ids: list[str]) -> list[int]:
        """Each row's sampling seed (vistune.train.stages.rollouts): the same for a row whatever process holds it."""
        from accelerate.utils import gather_object

        per_process = gather_object([ids])
        offset = sum(len(chunk) for chunk in per_process[:self.accelerator.process_index])
        return rollout_seeds(ids, [i for chunk in per_process for i in chunk], offset, self.args.seed,
                             self.state.global_step)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """vLLM (rl.use_vllm) generates through TRL from the same ids and the rollout's PIL images; otherwise
        transformers' generate, each row sampling from its own seeded stream (see rollouts.py), where TRL would
        sample from the process's generator (different completions for each process layout)."""
        if self.use_vllm:
            if self.state.global_step != self._last_loaded_step:
                self._sync_vllm_weights()
            return super()._generate_single_turn(prompt_ids, images or self._rollout_images, multimodal_fields,
                                                 num_generations, has_tool_images)
        from transformers import LogitsProcessorList
        from trl.models import unwrap_model_for_generation

        device, pad_id = self.accelerator.device, self._tokenizer.pad_token_id
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in prompt_ids], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids], device=device)
        config = copy.deepcopy(self.generation_config)
        sampling = SeededSampling(self._rollout_seeds, device, config.temperature, config.top_k, config.top_p,
                                  config.min_p)
        config.do_sample, config.temperature, config.top_k, config.top_p, config.min_p = False, None, None, None, None
        with (unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                          gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                                          generation_kwargs=self.generation_kwargs,
                                          gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs)
              as model, torch.no_grad()):
            out = model.generate(input_ids=input_ids, attention_mask=mask, **self._rollout_vision,
                                 generation_config=config, logits_processor=LogitsProcessorList([sampling]))
        completions = []
        for row in out[:, width:].tolist():  # each completion up to and including its first stop token
            ends = [i for i, tok in enumerate(row) if tok in self.eos_token_ids]
            completions.append(row[:ends[0] + 1] if ends else row)
        return completions, None

    def _sync_vllm_weights(self) -> None:
        """TRL's weight copy into the colocated vLLM engine (PEFT merged, ZeRO-3 gathered), under the hub's names:
        transformers 5 keeps the vision tower without its `vision_model.` prefix in memory, which vLLM's LLaVA
        loader does not read (vistune.train.saving.hub_layout)."""
        from vistune.train.saving.hub_layout import hub_name

        generation = self.vllm_generation
        engine = generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
        for name, param in generation._iter_named_params():
            engine.load_weights([(hub_name(name), param)])
        generation.llm.reset_prefix_cache()
        self._last_loaded_step = self.state.global_step

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, pixel_values=None,
                                           num_images=None, **kwargs):
        """TRL's log-probs, one image per row; the forwards it runs while scoring a rollout (old / reference
        log-probs) get the rollout's images, which TRL would only have from its own processor."""
        if pixel_values is None:
            pixel_values = self._rollout_vision["pixel_values"]
            if "image_sizes" in self._rollout_vision:
                kwargs["image_sizes"] = self._rollout_vision["image_sizes"]
        return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                          batch_size, compute_entropy, compute_aux_loss,
                                                          pixel_values=pixel_values,
                                                          num_images=num_images or [1] * input_ids.size(0), **kwargs)


class RLTrainer(ImagePrompts, VistuneTrainer, GRPOTrainer):
    """VistuneTrainer's machinery (artifacts, atomic checkpoints, non-finite guard, signals) over TRL's
    GRPOTrainer, whose rollouts, rewards, loss and metrics are used unchanged."""

    def __init__(self, *args, image_transform=None, **kwargs):
        self.image_transform = image_transform
        super().__init__(*args, **kwargs)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Trainer's accumulation window: GRPO's batches are rows to generate from, not token batches to meter
        or check for supervised tokens."""
        return super(VistuneTrainer, self).get_batch_samples(epoch_iterator, num_batches, device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = GRPOTrainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
        self._check_finite(loss, [])
        return loss


def make_trainer(config: RunConfig, **kwargs) -> VistuneTrainer:
    """RLTrainer with the rewards `rl.rewards` names (checked on the first rows before training starts)."""
    from vistune.data_prep.images.inputs import image_transform
    from vistune.model import apply_stage_policy, lora_config
    from vistune.train.loop.rewards import probe_rewards, resolve_rewards
    from vistune.train.run.build import lora_settings, uses_lora

    rl = config.rl
    model = kwargs.pop("model")
    kwargs.pop("data_collator", None)  # TRL batches rows as they are
    rewards = resolve_rewards(rl.rewards, rl.format_regex, rl.format_max_words)
    dataset = kwargs["train_dataset"]
    probe_rewards(rewards, [dataset[i] for i in range(min(2, len(dataset)))])
    processor = kwargs["run_files"]["processor"]
    stops = stop_token_ids(processor, config.template)
    model.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    peft_config = lora_config(model, lora_settings(config)) if uses_lora(config) else None
    start_name = model.name_or_path
    if rl.use_vllm or (peft_config is None and rl.beta > 0):  # TRL will load model.name_or_path: the start's copy
        start_copy, args = Path(config.output_dir) / START_COPY, kwargs["args"]
        with args.main_process_first(desc="the start model in the hub layout"):
            if args.process_index == 0:
                write_start_copy(model, processor, start_copy)
        model.name_or_path = model.config._name_or_path = str(start_copy)
    trainer = RLTrainer(model=model, reward_funcs=rewards, processing_class=processor, peft_config=peft_config,
                        image_transform=image_transform(processor, config.data.aspect), **kwargs)
    if peft_config is not None:  # only the adapter trains: the adapter-free network must stay the reference
        apply_stage_policy(trainer.model, "rl", config.method)
        trainer.model.peft_config["default"].base_model_name_or_path = start_name
    model.name_or_path = model.config._name_or_path = start_name  # vLLM and the reference have loaded
    return trainer
