"""The same `model.base` in the data doctor, the dry run, the planner, eval / chat loading and export."""

from __future__ import annotations

import subprocess
import sys

RECIPE = "configs/llava-1.5-7b/finetune_lora.yaml"


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vistune.cli", *map(str, args)], capture_output=True, text=True)


def test_doctor_tokenises_with_the_base(zoo, shapes):
    result = _cli("data", "validate", shapes / "small.json", "--model", zoo.llava_hf())
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_llava_format_base_needs_its_vision_tower_here(zoo, shapes):
    """LLaVA's config names its tower by hub id; offline the doctor / loaders say to give a local CLIP."""
    result = _cli("data", "validate", shapes / "small.json", "--model", zoo.llava_v15())
    assert result.returncode == 2, result.stderr[-2000:]
    assert "openai/clip-vit-large-patch14-336" in result.stderr and "--vision" in result.stderr


def test_dry_run_and_plan_read_the_base(zoo, shapes):
    overrides = [f"model.base={zoo.llava_hf()}", "model.preset=null", "model.projector=null",
                 f"data.path={shapes / 'small.json'}", f"data.image_root={shapes}"]
    dry = _cli("train", RECIPE, *overrides, "--dry-run")
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert f"base={zoo.llava_hf()}" in dry.stdout and "the base's config" in dry.stdout
    plan = _cli("plan", RECIPE, *overrides, "--gpu", "a100-80g")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert str(zoo.llava_hf()) in plan.stdout


def test_eval_and_chat_load_an_imported_checkpoint(zoo, tmp_path):
    from vistune.model.checkpoints.llava_format import import_llava
    from vistune.model.checkpoints.load import load_trained

    out = tmp_path / "imported"
    import_llava(zoo.llava_v15(), out, vision=str(zoo.clip()), dtype="float32", allow_pickle=True)
    model, processor, template = load_trained(out)  # what `eval run` / `chat --model` call
    assert template == "vicuna_v1"  # LLaVA-1.5's conversation, recorded by the import
    assert model.config.vision_feature_layer == -2 and model.config.vision_feature_select_strategy == "default"
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_index


def test_eval_loads_a_llava_hf_dir_with_its_own_template(zoo):
    from vistune.data_prep import get_template, record_from_messages
    from vistune.model.checkpoints.load import load_trained

    model, processor, template = load_trained(zoo.llava_hf())
    assert template == "auto"
    record = record_from_messages([{"role": "user", "content": "What is the colour of the shape?"}], ["x.png"])
    assert get_template(template).prompt(record, processor.tokenizer) == \
        "USER: <image>\nWhat is the colour of the shape? ASSISTANT:"
