"""Loading is safe: safetensors only unless `model.allow_pickle: true`, no code from a checkpoint ever runs
(`trust_remote_code` is never passed as True), and configs refuse unknown keys with a suggestion."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from rel_helpers import LORA, REPO
from safetensors.torch import load_file


def _pickle_only(src: Path, dst: Path, weights: str = "model.safetensors") -> Path:
    """A copy of checkpoint dir `src` whose weights are a pickle pytorch_model.bin instead of safetensors."""
    shutil.copytree(src, dst)
    torch.save(load_file(str(dst / weights)), dst / "pytorch_model.bin")
    (dst / weights).unlink()
    return dst


@pytest.mark.parametrize("part", ["llm", "vision"])
def test_pickle_only_weights_are_refused_unless_allowed(tiny_parts, tmp_path, part):
    from vistune.model import build_llava
    from vistune.model.compose import PickleWeightsRefused

    vision, llm = (str(p) for p in tiny_parts)
    if part == "llm":
        llm = str(_pickle_only(Path(llm), tmp_path / "llm"))
    else:
        vision = str(_pickle_only(Path(vision), tmp_path / "vision"))
    with pytest.raises(PickleWeightsRefused, match=r"only pickle weights \(pytorch_model\.bin\).*allow_pickle: true"):
        build_llava(vision, llm)
    model, _ = build_llava(vision, llm, allow_pickle=True)
    assert model.lm_head.weight.shape[0] > 0


def test_allow_pickle_still_loads_safetensors(tiny_parts):
    from vistune.model import build_llava

    vision, llm = (str(p) for p in tiny_parts)
    reference, _ = build_llava(vision, llm)
    model, _ = build_llava(vision, llm, allow_pickle=True)
    torch.testing.assert_close(model.lm_head.weight, reference.lm_head.weight)


def test_the_recipe_option_reaches_the_loader(tiny_parts, tmp_path, monkeypatch):
    """`model.allow_pickle` in a run config is what build_model passes on (default false)."""
    import vistune.model
    from vistune.train.run.build import build_model
    from vistune.train.run.config import load_config

    seen = []
    monkeypatch.setattr(vistune.model, "build_llava", lambda *a, **k: seen.append(k["allow_pickle"]) or 1 / 0)
    for extra, expected in (([], False), (["model.allow_pickle=true"], True)):
        config = load_config(LORA, ["data.path=x.json", "model.projector=null", *extra])
        with pytest.raises(ZeroDivisionError):
            build_model(config)
        assert seen.pop() is expected


def test_trust_remote_code_is_never_turned_on_in_the_source():
    hits = []
    for path in sorted((REPO / "vistune").rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "trust_remote_code" in line and not re.search(r"trust_remote_code\s*=\s*False", line):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert hits == [], "trust_remote_code must never be passed as True (or from a variable):\n" + "\n".join(hits)


def test_code_shipped_with_a_checkpoint_never_runs(tiny_parts, tmp_path):
    """An LLM dir whose config.json points at its own modeling code (auto_map): composing never imports it."""
    from vistune.model import build_llava

    vision, llm = tiny_parts
    evil = tmp_path / "evil-llm"
    shutil.copytree(llm, evil)
    marker = tmp_path / "pwned"
    (evil / "modeling_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import LlamaForCausalLM\n\nclass EvilForCausalLM(LlamaForCausalLM):\n    pass\n")
    config = json.loads((evil / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (evil / "config.json").write_text(json.dumps(config))
    try:
        build_llava(str(vision), str(evil))
    except Exception as err:  # refusing is fine too; running the code is not
        assert "trust_remote_code" in str(err) or "remote code" in str(err).lower(), err
    assert not marker.exists(), "code from the checkpoint directory was executed"


@pytest.mark.parametrize("where, key, suggestion", [
    ("yaml", "optim: {weight_decy: 0.1}", "optim.weight_decay"),
    ("yaml", "data: {max_lenght: 64}", "data.max_length"),
    ("yaml", "save_step: 10", "save_steps"),
    ("override", "model.allow_pickel=true", "model.allow_pickle"),
    ("override", "optim.lrr=1e-4", "optim.lr"),
])
def test_unknown_config_keys_are_refused_with_a_suggestion(tmp_path, capsys, where, key, suggestion):
    from vistune.cli import main
    from vistune.train.run.config import ConfigError, load_config

    recipe, extra = LORA, [key]
    if where == "yaml":
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(LORA.read_text() + "\n" + key + "\n")
        extra = []
    with pytest.raises(ConfigError, match=f"unknown config key .*did you mean '{re.escape(suggestion)}'"):
        load_config(recipe, extra)
    assert main(["train", str(recipe), *extra, "--dry-run"]) == 2
    assert f"did you mean '{suggestion}'" in capsys.readouterr().err


def test_vistune_train_on_a_pickle_only_llm_says_so_with_exit_2(tiny_parts, clean, tmp_path, capsys):
    from rel_helpers import overrides

    from vistune.cli import main

    vision, llm = tiny_parts
    pickled = _pickle_only(Path(llm), tmp_path / "llm")
    data, root = clean
    args = ["train", str(LORA), *overrides(data, root, tmp_path / "run", **{"model.preset": "null",
            "model.vision": vision, "model.llm": pickled})]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error: LLM" in err and "only pickle weights" in err and "model.allow_pickle: true" in err
