"""What the planner reads: DeepSpeed JSONs, dataset statistics (published table or a local records file),
the recipe adapter, and the --mfu override."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vistune.perf.gpus import get_gpu
from vistune.perf.memory import deepspeed_settings
from vistune.plan.datasets import KNOWN_DATASETS, dataset_stats, measure_records
from vistune.plan.planner import estimate, plan_input_from_config
from vistune.train.run.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_deepspeed_settings_from_the_repo_configs():
    ds = ROOT / "configs" / "deepspeed"
    assert deepspeed_settings(str(ds / "zero2.json"))["zero_stage"] == 2
    offload = deepspeed_settings(str(ds / "zero3_offload.json"))
    assert offload["zero_stage"] == 3 and offload["offload_optimizer"] and offload["offload_param"]
    assert deepspeed_settings(None) == {"zero_stage": 0}
    assert deepspeed_settings("elsewhere/zero3.json")["zero_stage"] == 3  # absent file: read from its name


def test_published_sets_by_file_name():
    assert dataset_stats("data/llava_v1_5_mix665k.json").samples == 665_298
    assert dataset_stats("data/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json").samples == 558_128
    assert KNOWN_DATASETS["llava-mix665k"].mean_tokens(576) == pytest.approx(330 + 0.94 * 576)


def test_local_records_are_measured(tmp_path):
    records = [
        {"image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},
                                             {"from": "gpt", "value": "x" * 380}]},
        {"conversations": [{"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi"}]},
    ]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(records))
    stats = measure_records(path)
    assert stats.samples == 2 and stats.image_fraction == 0.5
    assert stats.longest_text_tokens > 100 + 40  # 380 characters ~ 100 tokens + template
    (tmp_path / "mine.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    assert dataset_stats(str(tmp_path / "mine.jsonl")).samples == 2
    with pytest.raises(ValueError, match="samples"):
        dataset_stats(str(tmp_path / "absent.json"))


def test_recipe_adapter_reads_the_run_config():
    config = load_config(ROOT / "configs/llava-1.5-13b/finetune_lora.yaml", ["optim.per_device_batch_size=4"])
    inp = plan_input_from_config(config, get_gpu("a100-40g"), gpus_per_node=8, nodes=2)
    assert (inp.arch.llm.hidden, inp.arch.llm.layers, inp.arch.image_tokens) == (5120, 40, 576)
    assert (inp.work.method, inp.work.lora_r, inp.zero_stage, inp.micro_batch) == ("lora", 128, 3, 4)
    assert inp.world_size == 16 and inp.global_batch == 64 and inp.dtype_bytes == 2


def test_tiny_recipe_plans_from_the_built_parts(tmp_path, tiny_parts):
    from vistune.data_prep import synthesize

    paths = synthesize(tmp_path, n=12, seed=0)
    config = load_config(ROOT / "configs/tiny/instruct_lora.yaml", [f"data.path={paths['instruct']}"])
    inp = plan_input_from_config(config, get_gpu("rtx4090"))
    assert inp.arch.llm.hidden == 64 and inp.dtype_bytes == 4
    assert inp.data.samples == len(json.loads(paths["instruct"].read_text()))
    assert estimate(inp).fits


def test_measured_mfu_replaces_the_default():
    config = load_config(ROOT / "configs/llava-1.5-7b/finetune_lora.yaml")
    base = plan_input_from_config(config, get_gpu("a100-80g"), 8)
    default = estimate(base)
    given = estimate(base.replace(mfu=default.mfu / 2))
    assert given.hours == pytest.approx(2 * default.hours)
    assert "given" in given.mfu_source


def test_reference_free_prefer_losses_plan_no_reference_forward():
    """orpo / simpo have no reference model: no reference forward in the FLOPs, no frozen copy for full."""
    from vistune.perf.flops import sample_flops

    def plan(loss: str, method: str = "lora"):
        config = load_config(ROOT / "configs/llava-1.5-7b/prefer_lora.yaml", [f"preference.loss={loss}",
                                                                               f"method={method}"])
        return plan_input_from_config(config, get_gpu("a100-80g"), gpus_per_node=8)

    sigmoid, orpo, simpo = plan("sigmoid"), plan("orpo"), plan("simpo")
    assert sigmoid.work.reference_model and not orpo.work.reference_model and not simpo.work.reference_model
    assert sample_flops(orpo.arch, orpo.work, 300).executed < sample_flops(sigmoid.arch, sigmoid.work, 300).executed
    full = {loss: estimate(plan(loss, "full")).memory.weights for loss in ("sigmoid", "simpo")}
    assert full["simpo"] < full["sigmoid"]  # no frozen reference copy
