"""The fast path is the default: auto switches resolve from the attention, memory model and machine; every explicit
setting wins; the loss the defaults train on is LLaVA's (the old settings, set explicitly, give the same losses)."""

from __future__ import annotations

import json

import pytest
import yaml

from vistune.train.run.config import AUTO, ConfigError, load_config

OLD = ["data.packing=false", "optim.cross_entropy=full", "optim.gradient_checkpointing=true"]  # LLaVA's settings


def _config(tmp_path, mixed_data, name="run", **optim) -> str:
    path, root = mixed_data
    config = {"stage": "instruct", "method": "lora", "model": {"preset": "tiny", "dtype": "float32"},
              "data": {"path": str(path), "image_root": str(root), "template": "vicuna_v1", "max_length": 256,
                       "group_by_length": False, "num_workers": 0},
              "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "output_dir": str(tmp_path / name),
              "optim": {"max_steps": 3, "per_device_batch_size": 4, "bf16": False, "tf32": False, "lr": 1e-3,
                        "warmup_ratio": 0.0, **optim},
              "save_steps": 0, "resume": "none", "seed": 0}
    out = tmp_path / f"{name}.yaml"
    out.write_text(yaml.safe_dump(config))
    return str(out)


def test_defaults_are_auto_and_explicit_values_are_kept(tmp_path, mixed_data):
    config = load_config(_config(tmp_path, mixed_data))
    assert (config.data.packing, config.optim.gradient_checkpointing, config.optim.liger) == (AUTO, AUTO, AUTO)
    assert config.optim.cross_entropy == "chunked"
    old = load_config(_config(tmp_path, mixed_data), OLD)
    assert (old.data.packing, old.optim.cross_entropy, old.optim.gradient_checkpointing) == (False, "full", True)
    assert load_config(_config(tmp_path, mixed_data), ["optim.cross_entropy=default"]).optim.cross_entropy == "full"
    with pytest.raises(ConfigError, match="did you mean 'true'"):
        load_config(_config(tmp_path, mixed_data), ["data.packing=ture"])


def test_packing_follows_the_attention_implementation(tmp_path, mixed_data):
    from vistune.train.run.resolve import resolve_packing

    config = load_config(_config(tmp_path, mixed_data))
    assert resolve_packing(config).value is True and config.data.packing is True
    assert resolve_packing(config) is None  # resolved once; building again changes nothing
    sdpa = load_config(_config(tmp_path, mixed_data), ["model.attn_implementation=sdpa"])
    decision = resolve_packing(sdpa)
    assert decision.value is False and "no per-sample kernel" in decision.reason
    explicit = load_config(_config(tmp_path, mixed_data), ["model.attn_implementation=sdpa", "data.packing=true"])
    assert resolve_packing(explicit) is None and explicit.data.packing is True  # transformers' block mask: correct
    odd = load_config(_config(tmp_path, mixed_data), ["model.attn_implementation=my_kernel", "data.packing=true"])
    with pytest.raises(ConfigError, match="not known to keep packed samples apart"):
        resolve_packing(odd)


def test_checkpointing_is_decided_by_the_memory_model(tmp_path, mixed_data):
    from vistune.data_prep import SkipLog
    from vistune.perf.memory import GIB
    from vistune.train.run.build import build_dataset, build_model
    from vistune.train.run.resolve import resolve_checkpointing, worst_batch

    assert worst_batch([5, -9, 3, 7], 2, packed=True) == (16, 1)
    assert worst_batch([5, -9, 3, 7], 2, packed=False) == (9, 2)
    config = load_config(_config(tmp_path, mixed_data))
    model, processor = build_model(config)
    dataset, _ = build_dataset(config, processor, model, SkipLog())
    roomy = resolve_checkpointing(config, model, dataset, budget=(64 * GIB, "test"))
    assert roomy.value is False and config.optim.gradient_checkpointing is False and "within 80%" in roomy.reason
    config.optim.gradient_checkpointing = AUTO
    tight = resolve_checkpointing(config, model, dataset, budget=(1e6, "test"))  # 1 MB: nothing fits
    assert tight.value is True and config.optim.gradient_checkpointing is True and "over 80%" in tight.reason
    assert config.optim.checkpoint_layers == 0  # nothing fits: every layer recomputes
    config.optim.gradient_checkpointing = False  # explicit: never touched
    assert resolve_checkpointing(config, model, dataset, budget=(1e6, "test")) is None
    assert config.optim.gradient_checkpointing is False


def _losses(run_dir) -> list[float]:
    return [json.loads(x)["loss"] for x in (run_dir / "log.jsonl").read_text().splitlines()]


def test_defaults_train_on_llavas_loss_and_old_settings_reproduce_it(tmp_path, mixed_data):
    """Three steps with the defaults (packed, chunked CE, checkpointing decided: off here) and with LLaVA's settings
    set explicitly (padded, full CE, checkpointing on): the same per-step losses (HF Trainer's per-token mean over
    the batch), so packing's ignored first label of each sample and its batch-wide normalisation change nothing.
    The explicit run really runs the old path; the default run records what auto became in config.yaml."""
    from transformers import TrainerCallback

    from vistune.data_prep import DataCollator
    from vistune.train.run.build import build_run, loss_function
    from vistune.train.stages.engine import train, training_arguments

    class Flags(TrainerCallback):
        seen: list = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            from vistune.model.compose import llava_of

            self.seen.append([x.gradient_checkpointing for x in llava_of(model).model.language_model.layers])

    fast = load_config(_config(tmp_path, mixed_data, "fast"))
    old = load_config(_config(tmp_path, mixed_data, "old"), OLD)
    partial = load_config(_config(tmp_path, mixed_data, "partial"), ["optim.gradient_checkpointing=true",
                                                                      "optim.checkpoint_layers=1"])
    train(fast)
    train(old)
    train(partial, callbacks=[Flags()])
    a, b, c = _losses(tmp_path / "fast"), _losses(tmp_path / "old"), _losses(tmp_path / "partial")
    assert len(a) == len(b) == 3
    assert a == pytest.approx(b, rel=1e-4, abs=1e-5) and c == pytest.approx(a, rel=1e-4, abs=1e-5)
    assert Flags.seen and all(flags[0] and not any(flags[1:]) for flags in Flags.seen)  # only layer 0 recomputes

    text = (tmp_path / "fast" / "config.yaml").read_text()
    assert "# data.packing: auto -> true" in text and "# optim.gradient_checkpointing: auto -> false" in text
    saved = yaml.safe_load(text)
    assert saved["data"]["packing"] is True and saved["optim"]["gradient_checkpointing"] is False
    assert saved["optim"]["liger"] is False  # no GPU here
    old_saved = yaml.safe_load((tmp_path / "old" / "config.yaml").read_text())
    assert old_saved["data"]["packing"] is False and old_saved["optim"]["gradient_checkpointing"] is True

    from vistune.data_prep import SkipLog

    replay = load_config(_config(tmp_path, mixed_data, "replay"), OLD)
    built = build_run(replay, SkipLog())
    assert isinstance(built.collator, DataCollator) and loss_function(replay) is None
    assert training_arguments(replay).gradient_checkpointing is True
    assert [d.key for d in built.decisions] == ["optim.liger"]  # nothing else was left to decide


def test_bench_compares_named_settings_and_skips_what_cannot_run(tmp_path, mixed_data):
    import torch

    from vistune.bench.runner import SETTINGS, bench, variants_from

    pair = variants_from(["settings=llava,vistune"])
    assert [v.name for v in pair] == ["settings=llava", "settings=vistune"]
    assert pair[0].overrides == SETTINGS["llava"] and pair[1].overrides == []
    with pytest.raises(ValueError, match="unknown fastest"):
        variants_from(["settings=fastest"])
    if torch.cuda.is_available():
        pytest.skip("Liger may run here")
    said = []
    result = bench(_config(tmp_path, mixed_data), ["settings=vistune,liger"], steps=1, warmup=0, rounds=1,
                   progress=said.append)
    assert [v.name for v in result.variants] == ["settings=vistune"]
    assert any("skipping variant settings=liger" in line and "liger-kernel" in line for line in said)
    run = result.runs[0]
    assert run.settings["data.packing"] is True and run.settings["optim.cross_entropy"] == "chunked"
    assert run.samples_per_cpu_s > 0
    with pytest.raises(ValueError, match="no variant can run"):
        bench(_config(tmp_path, mixed_data), ["settings=liger"], steps=1, warmup=0, rounds=1, progress=said.append)


def test_checkpointing_only_as_many_layers_as_needed(tiny_llava):
    """Between "fits without" and "needs every layer" the memory model picks the fewest checkpointed layers, and
    PartialCheckpointing leaves the recompute on for exactly those."""
    from vistune.perf.arch import llava_arch_from_config
    from vistune.perf.flops import Workload
    from vistune.perf.memory import Engine, decide_checkpointing, estimate_memory
    from vistune.train.loop.callbacks import PartialCheckpointing

    model, _ = tiny_llava
    arch = llava_arch_from_config(model.config)
    work, engine = Workload("instruct", "lora", lora_r=8), Engine(dtype_bytes=4, device="cpu")
    total = arch.llm.layers
    assert total >= 2
    sizes = [estimate_memory(arch, work, engine, 512, 8, checkpoint_layers=k).total for k in range(total + 1)]
    assert sizes == sorted(sizes, reverse=True)  # each checkpointed layer saves memory
    budget = (sizes[total - 1] + sizes[total - 2]) / 2 / 0.8  # fits with total - 1 layers, not with total - 2
    decision = decide_checkpointing(arch, work, engine, 512, 8, budget)
    assert decision.needed and decision.layers == total - 1 and f"{total - 1} of {total} layers" in decision.reason()

    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    PartialCheckpointing(1).on_train_begin(None, None, None, model=model)
    flags = [layer.gradient_checkpointing for layer in model.model.language_model.layers]
    assert flags == [True] + [False] * (total - 1)
