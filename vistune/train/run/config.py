"""The training run's configuration: typed dataclasses, loaded from a YAML recipe plus `key=value` overrides.

One `RunConfig` describes a whole run (model parts, data, stage, method, hyper-parameters, engine, outputs).
Unknown keys are refused with a "did you mean" suggestion: a typo must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

STAGES = ("align", "instruct", "prefer", "rl")
PREFERENCE_LOSSES = ("sigmoid", "ipo", "orpo", "simpo")
RL_LOSSES = ("grpo", "dr_grpo", "dapo", "bnpo")  # TRL GRPOConfig.loss_type names
METHODS = ("lora", "qlora", "full")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
REPORT_TO = ("none", "tensorboard", "wandb")
ASPECTS = ("pad", "resize", "crop")
LOADERS = ("auto", "cache", "memory", "stream")
CROSS_ENTROPY = ("chunked", "full", "liger")
AUTO = "auto"  # a switch left to vistune: resolved at build time from the machine, model and data
ARCHS = ("llava", "llava_next", "llava_onevision")
VISION_MODES = ("frozen", "full", "lora")


class ConfigError(ValueError):
    """A configuration problem, with a message that says what to change."""


@dataclass
class ModelConfig:
    preset: str | None = None  # a vistune model preset (vision + llm pair, e.g. llava-1.5-7b); sets vision and llm
    vision: str = "tiny-clip"  # vision tower: preset name, local directory or hub id (CLIP / SigLIP)
    llm: str = "tiny-llama"  # language model: preset name, local directory, hub id or .gguf file
    dtype: str = "bfloat16"  # weight dtype of the composed model (float32 on CPU)
    projector: str | None = None  # stage-1 projector.safetensors, or a run / checkpoint dir holding one
    vision_feature_layer: int = -2  # vision layer whose patch features feed the projector (LLaVA-1.5: -2)
    arch: str = "llava"  # llava (one padded square), llava_next (AnyRes crops) or llava_onevision (anyres_max_N)
    image_grid_pinpoints: list[list[int]] | None = None  # AnyRes crop grids (h, w), multiples of the tower size; None = published
    vision_aspect_ratio: str = "anyres_max_9"  # llava_onevision: grids beyond N crops are pooled down to about N
    attn_implementation: str | None = None  # sdpa / flash_attention_2 / eager; None = transformers' default
    train_vision: str = "frozen"  # vision tower: frozen (LLaVA-1.5), full (LLaVA-NeXT stage 2) or lora (own rank)
    allow_pickle: bool = False  # allow loading pickle .bin weights (safetensors only by default)
    base: str | None = None  # start from an existing LLaVA (HF Llava dir / hub id, vistune export, LLaVA checkpoint)
    base_adapter: str = "continue"  # a base+lora export's adapter: continue training it, or merge it first
    base_vision: str | None = None  # local CLIP dir for a LLaVA-format base (its mm_vision_tower is a hub id)


@dataclass
class DataConfig:
    path: str = ""  # records file (LLaVA JSON / JSONL) for this stage
    image_root: str = ""  # directory that image paths in the records are relative to (nothing outside is read)
    template: str = "auto"  # conversation template; "auto" = plain for align, the LLM's own for instruct
    max_length: int = 2048  # tokens per sample, image tokens included (LLaVA-1.5: 2048)
    aspect: str = "pad"  # image aspect handling: pad (LLaVA-1.5), resize or crop
    group_by_length: bool = True  # batch samples of similar length, separately for image and text-only ones
    group_megabatches: int = 1  # steps whose samples are length-sorted together (1 = LLaVA: balances ranks only)
    num_workers: int = 4  # dataloader worker processes per rank
    packing: bool | str = AUTO  # padding-free: a batch's samples in one row, no cross attention; auto = on when the attention keeps samples apart
    loader: str = "auto"  # auto (stream a dir of .tar shards, else cache), cache (tokenised once, shared), memory, stream
    cache_dir: str = ""  # where tokenised caches live ("" = $VISTUNE_CACHE/tokenized, ~/.cache/vistune/tokenized)
    shuffle_buffer: int = 1000  # stream: samples in the seeded shuffle buffer (length grouping happens inside it)


@dataclass
class LoraConfig:
    r: int = 128  # LoRA rank (LLaVA-1.5: 128)
    alpha: int = 256  # LoRA scaling numerator (LLaVA-1.5: 256)
    dropout: float = 0.05  # dropout on the LoRA input
    target_modules: list[str] | None = None  # LLM linear leaf names; None = every linear layer except lm_head
    vision_r: int = 16  # rank of the vision tower's LoRA (model.train_vision: lora)
    vision_alpha: int = 32  # scaling numerator of the vision tower's LoRA
    vision_target_modules: list[str] | None = None  # tower linear leaf names; None = every encoder-layer linear


@dataclass
class OptimConfig:
    lr: float = 2e-4  # peak learning rate of the main trainable parameters (LoRA / LLM / projector in align)
    projector_lr: float | None = None  # own learning rate of the projector (+ image_newline) in instruct (LLaVA-1.5 LoRA: 2e-5)
    vision_lr: float | None = None  # own learning rate of the vision tower (or its LoRA) when it trains (LLaVA-NeXT: 2e-6)
    llm_lr: float | None = None  # own learning rate of the LLM / its LoRA in instruct; None = lr
    epochs: float = 1.0  # passes over the data (ignored when max_steps > 0)
    max_steps: int = -1  # optimizer steps; > 0 overrides epochs
    per_device_batch_size: int = 16  # samples per process per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    warmup_ratio: float = 0.03  # share of the steps spent warming the lr up linearly
    weight_decay: float = 0.0  # AdamW weight decay (not applied to biases and norms)
    scheduler: str = "cosine"  # lr schedule after warmup
    max_grad_norm: float = 1.0  # gradient clipping; 0 disables
    gradient_checkpointing: bool | str = AUTO  # recompute LLM activations in backward; auto = only when the memory model says the step does not fit
    vision_gradient_checkpointing: bool = False  # recompute the tower's activations too (when it trains; the LLM's switch also covers it)
    checkpoint_layers: int = 0  # with gradient_checkpointing on: recompute only the first N decoder layers (0 = all)
    cross_entropy: str = "chunked"  # chunked (logits only where a label is supervised), full (every position, LLaVA's) or liger (fused, GPU)
    liger: bool | str = AUTO  # Liger kernels (RMSNorm, SwiGLU, RoPE) for a Llama-family LLM; auto = on with CUDA and liger-kernel installed (not QLoRA)
    torch_compile: bool = False  # torch.compile the model (HF Trainer's torch_compile)
    bf16: bool = True  # bf16 mixed precision (GPUs with bf16 support)
    tf32: bool = True  # allow TF32 matmuls (Ampere and newer)


@dataclass
class EvalConfig:
    """One evaluation inside `vistune train`, on the in-memory model; metrics go to log.jsonl and report_to."""

    benchmark: str = ""  # a vistune.eval benchmark (shapes, gqa, pope, ...), or "loss" (held-out loss / perplexity)
    data: str = ""  # the benchmark's question file (for loss: a conversation records file, as data.path)
    image_root: str | None = None  # images are relative to this (default: the data file's folder)
    every: int = 0  # evaluate every N optimizer steps (0 = only at the end); always after the last step too
    limit: int | None = None  # only the first N questions (records for loss)
    name: str | None = None  # metrics are logged as eval/<name>/<metric>; default: the benchmark name
    max_new_tokens: int = 16  # generation: answer length limit
    temperature: float = 0.0  # generation: 0 = greedy decoding; > 0 samples
    top_p: float = 1.0  # generation: nucleus sampling (only when sampling)
    batch_size: int = 8  # questions per generate() call (loss: records per forward)

    @property
    def label(self) -> str:
        return self.name or self.benchmark


@dataclass
class PreferenceConfig:
    """Stage prefer: where it starts and which TRL preference loss it optimises."""

    start: str = ""  # stage-2 run / checkpoint dir or vistune export to start from; "" = compose from model.*
    loss: str = "sigmoid"  # sigmoid (DPO), ipo, orpo or simpo (see vistune.train.stages.prefer for the TRL class of each)
    beta: float = 0.1  # strength of the preference term (DPO / IPO: KL regularisation; ORPO: odds-ratio weight
    # lambda; SimPO: reward scale)
    sft_weight: float = 0.0  # weight of an added NLL term on the chosen reply (0 = none; RPO / CPO alpha); ORPO
    # always has its own NLL term (weight 1), so orpo needs 0 here
    simpo_gamma: float = 0.5  # SimPO's target reward margin (TRL's CPOConfig.simpo_gamma); simpo only


@dataclass
class RLConfig:
    """Stage rl: online RL with verifiable rewards (TRL's GRPOTrainer; see vistune.train.stages.rl)."""

    start: str = ""  # stage-2 run / checkpoint dir or vistune export to start from; "" = compose from model.*
    loss_type: str = "dapo"  # grpo, dr_grpo, dapo or bnpo (TRL's GRPOConfig.loss_type; how token losses are averaged)
    num_generations: int = 8  # completions sampled per prompt (the group whose rewards are normalised)
    beta: float = 0.0  # KL weight to the start model; 0 = no reference model (no reference forward)
    max_completion_length: int = 16  # tokens a completion may take
    temperature: float = 1.0  # sampling temperature of the rollouts
    top_p: float = 1.0  # nucleus sampling of the rollouts
    epsilon: float = 0.2  # PPO clip range of the importance ratio
    rewards: list[str] = field(default_factory=lambda: ["exact"])  # built-in (exact, number, choice, format) or
    # module:function with TRL's reward signature (prompts, completions, completion_ids, **columns) -> list[float]
    reward_weights: list[float] = field(default_factory=list)  # one weight per reward; [] = all 1
    format_regex: str = ""  # the format reward: completions must fullmatch this; "" = a single short line
    format_max_words: int = 3  # the format reward without a regex: at most this many words on one line
    use_vllm: bool = False  # GPU only: rollouts by vLLM inside the training process (TRL's colocate mode)
    vllm_gpu_memory_utilization: float = 0.3  # colocate mode: share of GPU memory vLLM may take


@dataclass
class RunConfig:
    stage: str = "instruct"  # align (projector only), instruct (LoRA / QLoRA / full + projector), prefer (DPO
    # family) or rl (GRPO family, online with verifiable rewards)
    method: str = "lora"  # instruct / prefer method: lora, qlora (4-bit NF4 LLM + LoRA) or full; ignored for align
    model: ModelConfig = field(default_factory=ModelConfig)  # which parts are composed, and how
    data: DataConfig = field(default_factory=DataConfig)  # what is trained on
    lora: LoraConfig = field(default_factory=LoraConfig)  # adapter settings for lora / qlora
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimisation hyper-parameters
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)  # the prefer stage's start and loss
    rl: RLConfig = field(default_factory=RLConfig)  # the rl stage's start, rollouts and rewards
    deepspeed: str | None = None  # DeepSpeed JSON config (configs/deepspeed/zero2.json ...); None = plain DDP
    output_dir: str = "runs/default"  # where outputs, checkpoints and log.jsonl go
    save_steps: int = 500  # checkpoint every N optimizer steps (0 = only at the end)
    save_total_limit: int = 2  # keep the newest K complete checkpoints
    resume: str = "auto"  # auto (newest complete checkpoint, if any), none, or a checkpoint directory
    logging_steps: int = 1  # log every N optimizer steps (console, log.jsonl, report_to)
    report_to: str = "none"  # none, tensorboard or wandb
    seed: int = 42  # seeds model init, data order and dropout
    eval: list[EvalConfig] = field(default_factory=list)  # evaluations run while training (vistune.train.stages.live_eval)

    def validate(self) -> RunConfig:
        _choice("stage", self.stage, STAGES)
        _choice("method", self.method, METHODS)
        _choice("optim.scheduler", self.optim.scheduler, SCHEDULERS)
        _choice("report_to", self.report_to, REPORT_TO)
        _choice("data.aspect", self.data.aspect, ASPECTS)
        _choice("model.arch", self.model.arch, ARCHS)
        self.model.train_vision = _vision_mode(self.model.train_vision)
        if self.model.train_vision == "lora" and not (self.stage == "instruct" and self.method in ("lora", "qlora")):
            raise ConfigError("model.train_vision: lora needs stage instruct with method lora or qlora (one PEFT adapter "
                              "holds the LLM's and the tower's LoRA); use train_vision: full otherwise")
        _choice("data.loader", self.data.loader, LOADERS)
        if self.optim.cross_entropy == "default":  # the name before chunked became the default
            self.optim.cross_entropy = "full"
        _choice("optim.cross_entropy", self.optim.cross_entropy, CROSS_ENTROPY)
        _choice("preference.loss", self.preference.loss, PREFERENCE_LOSSES)
        if self.preference.loss == "orpo" and self.preference.sft_weight != 0:
            raise ConfigError("preference.sft_weight: ORPO's loss already holds the NLL term on the chosen reply "
                              "(weight 1); set sft_weight: 0 and weigh the odds-ratio term with preference.beta")
        if self.stage == "rl":
            _check_rl(self.rl)
        for key in ("data.packing", "optim.gradient_checkpointing", "optim.liger"):
            _auto_or_bool(self, key)
        if self.optim.checkpoint_layers < 0:
            raise ConfigError("optim.checkpoint_layers must be >= 0 (0 = every decoder layer)")
        if not self.data.path:
            raise ConfigError("data.path is empty: name the records file (e.g. data.path=data/llava_665k.json)")
        if self.optim.max_steps <= 0 and self.optim.epochs <= 0:
            raise ConfigError("set optim.epochs > 0 or optim.max_steps > 0")
        if self.save_total_limit < 1:
            raise ConfigError("save_total_limit must be >= 1 (the newest complete checkpoint is always kept)")
        if self.resume not in ("auto", "none") and not Path(self.resume).is_dir():
            raise ConfigError(f"resume: {self.resume!r} is neither auto, none nor a checkpoint directory")
        _check_evals(self.eval)
        if self.model.base:
            _check_base(self.model)
        if self.model.preset:
            from vistune.model import MODEL_PRESETS

            if self.model.preset not in MODEL_PRESETS:
                raise ConfigError(f"model.preset {self.model.preset!r} is unknown{_suggest(self.model.preset, MODEL_PRESETS)}")
        return self

    @property
    def start(self) -> str:
        """The trained model a later stage starts from (preference.start / rl.start), "" otherwise."""
        return {"prefer": self.preference.start, "rl": self.rl.start}.get(self.stage, "")

    @property
    def vision(self) -> str:
        from vistune.model import MODEL_PRESETS

        return MODEL_PRESETS[self.model.preset][0] if self.model.preset else self.model.vision

    @property
    def llm(self) -> str:
        from vistune.model import MODEL_PRESETS

        return MODEL_PRESETS[self.model.preset][1] if self.model.preset else self.model.llm

    @property
    def template(self) -> str:
        """The conversation template actually used: plain for align, the LLM's own for instruct when 'auto'."""
        if self.data.template != "auto":
            return self.data.template
        if self.stage == "align":
            return "plain"
        if self.model.base:
            from vistune.model.checkpoints.base import base_template

            return base_template(self.model.base)
        from vistune.model import default_template

        return default_template(self.llm)

    @property
    def trains_vision(self) -> bool:
        """The vision tower (or its LoRA) trains: backward runs through it."""
        return _vision_mode(self.model.train_vision) != "frozen"

    def module_lrs(self) -> dict[str, float | None]:
        """Learning rate of each parameter group (None: optim.lr): projector_lr and llm_lr apply in instruct."""
        o, instruct = self.optim, self.stage == "instruct"
        return {"vision": o.vision_lr, "projector": o.projector_lr if instruct else None,
                "llm": o.llm_lr if instruct else None}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _check_evals(entries: list[EvalConfig]) -> None:
    from vistune.eval import BENCHMARKS

    known = ("loss", *BENCHMARKS)
    labels = [e.label for e in entries]
    for i, e in enumerate(entries):
        where = f"eval[{i}]"
        _choice(f"{where}.benchmark", e.benchmark, known)
        if not e.data or not Path(e.data).exists():
            raise ConfigError(f"{where}.data: {e.data!r} does not exist (the {e.benchmark} question file)")
        if e.every < 0 or (e.limit is not None and e.limit < 1) or e.batch_size < 1 or e.max_new_tokens < 1:
            raise ConfigError(f"{where}: every >= 0, limit >= 1, batch_size >= 1 and max_new_tokens >= 1")
        if labels.count(e.label) > 1:
            raise ConfigError(f"{where}: two eval entries log as eval/{e.label}/...; give one a distinct name")


def _check_rl(rl: RLConfig) -> None:
    from vistune.train.loop.rewards import check_reward_names

    _choice("rl.loss_type", rl.loss_type, RL_LOSSES)
    if rl.num_generations < 2:
        raise ConfigError("rl.num_generations must be >= 2 (rewards are normalised within each prompt's group)")
    if rl.max_completion_length < 1 or rl.temperature <= 0 or not 0 < rl.top_p <= 1 or rl.beta < 0:
        raise ConfigError("rl: max_completion_length >= 1, temperature > 0, 0 < top_p <= 1 and beta >= 0")
    if not rl.rewards:
        raise ConfigError("rl.rewards is empty: name at least one (exact, number, choice, format or module:function)")
    if rl.reward_weights and len(rl.reward_weights) != len(rl.rewards):
        raise ConfigError(f"rl.reward_weights has {len(rl.reward_weights)} weights for {len(rl.rewards)} rewards "
                          f"({', '.join(rl.rewards)}): give one per reward, or none")
    try:
        check_reward_names(rl.rewards)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _vision_mode(value) -> str:
    """frozen / full / lora; the booleans of older configs mean frozen (false) and full (true)."""
    if isinstance(value, bool) or str(value).lower() in ("true", "false"):
        return "full" if str(value).lower() == "true" else "frozen"
    _choice("model.train_vision", value, VISION_MODES)
    return value


def _check_base(model: ModelConfig) -> None:
    """model.base brings its own vision tower, LLM and projector: naming parts beside it is a contradiction."""
    defaults = ModelConfig()
    clashing = [f"model.{k}" for k in ("preset", "vision", "llm", "projector")
                if getattr(model, k) != getattr(defaults, k)]
    if clashing:
        raise ConfigError(f"model.base {model.base!r} already holds the vision tower, LLM and projector: "
                          f"remove {', '.join(clashing)} (or drop model.base to compose from parts)")
    from vistune.model.checkpoints.base import ADAPTER_MODES

    _choice("model.base_adapter", model.base_adapter, ADAPTER_MODES)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}{_suggest(value, allowed)}")


def _auto_or_bool(config: RunConfig, dotted: str) -> None:
    """A switch that is true, false or auto."""
    section, name = dotted.split(".")
    value = getattr(getattr(config, section), name)
    if not isinstance(value, bool) and value != AUTO:
        raise ConfigError(f"{dotted}: {value!r} is not one of true, false, auto{_suggest(value, ['true', 'false', AUTO])}")


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value, annotation, key: str):
    """Converts a YAML / command-line value to the field's annotated type, or says what is wrong."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~") and type(None) in args):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be {value!r}")
    if origin is list:
        (item,) = typing.get_args(annotation)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item, key) for v in value]
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {annotation.__name__} fields, got {value!r}")
        item = annotation()
        _apply(item, value, key + ".")
        return item
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value) if annotation is float else int(str(value), 0) if isinstance(value, str) else value
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and (not isinstance(number, int) and not float(number).is_integer()):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return annotation(number)
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported field type {annotation}")


def _apply(obj, values: dict, prefix: str = "") -> None:
    """Sets `values` (a nested dict) on the dataclass `obj`, refusing unknown keys."""
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            candidates = [f"{prefix}{n}" for n in names]
            raise ConfigError(f"unknown config key {dotted!r}{_suggest(dotted, candidates)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{dotted}: expected a mapping of its fields, got {value!r}")
            _apply(current, value, dotted + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted))


def parse_override(text: str) -> dict:
    """'optim.lr=2e-4' -> {'optim': {'lr': 2e-4}}; the value is read as YAML (numbers, booleans, lists)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value (e.g. optim.lr=2e-4)")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    nested: dict = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Loads a YAML recipe (or the defaults when `path` is None), applies `key=value` overrides, validates."""
    config = RunConfig()
    if path is not None:
        text = Path(path).read_text()
        values = yaml.safe_load(text) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: a config file is a mapping of keys, not {type(values).__name__}")
        _apply(config, values)
    for item in overrides or []:
        _apply(config, parse_override(item))
    return config.validate()


def config_from_dict(values: dict) -> RunConfig:
    """Rebuilds a RunConfig from its `to_dict()` form (e.g. a saved config.yaml), without validation."""
    config = RunConfig()
    _apply(config, values)
    return config
