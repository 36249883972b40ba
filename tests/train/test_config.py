"""Config loading, overrides, refusals; every recipe and launch script resolves with --dry-run (no downloads)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.train.conftest import REPO
from vistune.train.run.config import ConfigError, load_config, parse_override

RECIPES = sorted((REPO / "configs").glob("*/*.yaml"))
SCRIPTS = sorted((REPO / "scripts").rglob("*.sh"))


def test_yaml_and_overrides_are_typed():
    c = load_config(REPO / "configs/llava-1.5-7b/finetune_lora.yaml",
                    ["optim.lr=1e-4", "lora.r=16", "optim.bf16=false", "lora.target_modules=q_proj,v_proj",
                     "model.projector=null"])
    assert c.optim.lr == pytest.approx(1e-4) and isinstance(c.optim.lr, float)
    assert c.lora.r == 16 and c.optim.bf16 is False
    assert c.lora.target_modules == ["q_proj", "v_proj"] and c.model.projector is None
    assert parse_override("a.b.c=3") == {"a": {"b": {"c": 3}}}


@pytest.mark.parametrize("override, hint", [
    ("optim.lrr=1", "did you mean 'optim.lr'"),
    ("lora.rank=8", "did you mean 'lora.r'"),
    ("outptu_dir=x", "did you mean 'output_dir'"),
    ("method=lorra", "did you mean 'lora'"),
    ("stage=allign", "did you mean 'align'"),
    ("optim.lr=fast", "expected float"),
    ("lora.r=1.5", "expected an integer"),
])
def test_unknown_keys_and_bad_values_are_refused(override, hint):
    with pytest.raises(ConfigError, match=re.escape(hint)):
        load_config(REPO / "configs/tiny/instruct_lora.yaml", [override])


def test_recipes_match_the_published_llava_1_5_numbers():
    for size in ("7b", "13b"):
        pre = load_config(REPO / f"configs/llava-1.5-{size}/pretrain.yaml")
        assert (pre.stage, pre.template, pre.optim.lr, pre.optim.per_device_batch_size) == ("align", "plain", 1e-3, 32)
        assert pre.deepspeed.endswith("zero2.json") and pre.optim.warmup_ratio == 0.03 and pre.optim.weight_decay == 0
        lora = load_config(REPO / f"configs/llava-1.5-{size}/finetune_lora.yaml")
        assert (lora.lora.r, lora.lora.alpha, lora.optim.lr, lora.optim.projector_lr) == (128, 256, 2e-4, 2e-5)
        assert lora.optim.per_device_batch_size == 16 and lora.deepspeed.endswith("zero3.json")
        assert lora.template == "vicuna_v1" and lora.data.max_length == 2048 and lora.data.aspect == "pad"
        full = load_config(REPO / f"configs/llava-1.5-{size}/finetune_full.yaml")
        assert (full.method, full.optim.lr) == ("full", 2e-5)
        assert load_config(REPO / f"configs/llava-1.5-{size}/finetune_qlora.yaml").method == "qlora"


LAUNCH_SCRIPTS = [s for s in SCRIPTS if s.parent.name.startswith("llava-")]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_script_passes_bash_n(script: Path):
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_launch_scripts_cover_the_llava_recipes():
    names = {f"{s.parent.name}/{s.stem}" for s in LAUNCH_SCRIPTS}
    for size in ("7b", "13b"):
        assert {f"llava-1.5-{size}/{n}" for n in ("pretrain", "finetune_lora", "finetune_qlora")} <= names


@pytest.mark.parametrize("script", LAUNCH_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_launch_scripts_config_dry_runs(script: Path, capsys):
    from vistune.cli import main

    text = script.read_text()
    assert 'source "$(dirname "$0")/../launch_recipe.sh" "$@"' in text
    launcher = (REPO / "scripts" / "launch_recipe.sh").read_text()
    assert "exec deepspeed " in launcher and "--module vistune.cli train" in launcher
    assert re.search(r"exec accelerate launch ", launcher)
    (config,) = set(re.findall(r"^CONFIG=(\S+)$", text, re.M))
    assert main(["train", str(REPO / config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "resolved config:" in out and ("planned trainable parameters" in out or "table skipped" in out)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_recipe_dry_runs(recipe: Path, capsys):
    from vistune.cli import main

    assert main(["train", str(recipe), "--dry-run"]) == 0
    assert "resolved config:" in capsys.readouterr().out


def test_dry_run_of_a_hub_recipe_plans_from_the_architecture_table(capsys):
    from vistune.cli import main

    assert main(["train", str(REPO / "configs/llava-1.5-7b/finetune_lora.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    lora = next(line for line in out.splitlines() if re.match(r"lora +\d", line))
    assert int(lora.split()[1].replace(",", "")) == 32 * 128 * (4 * 2 * 4096 + 3 * (4096 + 11008))


def test_cli_reports_config_errors_with_exit_code_2(capsys):
    from vistune.cli import main

    assert main(["train", str(REPO / "configs/tiny/align.yaml"), "optim.lrr=1", "--dry-run"]) == 2
    assert "did you mean 'optim.lr'" in capsys.readouterr().err
