"""`key=value` overrides are accepted anywhere on a command line, also after the options."""

from __future__ import annotations

import pytest

from vistune.cli import build_parser, main, parse_args

RECIPE = "configs/llava-1.5-7b/finetune_lora.yaml"


@pytest.mark.parametrize("argv", [
    ["plan", RECIPE, "data.packing=true", "--gpus", "8", "--gpu", "a100-80g", "optim.lr=1e-4"],
    ["plan", RECIPE, "--gpus", "8", "--gpu", "a100-80g", "data.packing=true", "optim.lr=1e-4"],
    ["plan", "--gpus", "8", RECIPE, "--gpu", "a100-80g", "data.packing=true", "optim.lr=1e-4"],
])
def test_overrides_after_options_join_the_overrides(argv):
    args = parse_args(build_parser(), argv)
    assert args.overrides == ["data.packing=true", "optim.lr=1e-4"]
    assert args.gpus == 8 and args.gpu == "a100-80g"


def test_train_and_bench_take_trailing_overrides():
    train = parse_args(build_parser(), ["train", "x.yaml", "--dry-run", "optim.lr=1e-4"])
    assert train.overrides == ["optim.lr=1e-4"] and train.dry_run
    bench = parse_args(build_parser(), ["bench", "x.yaml", "--steps", "3", "data.packing=true"])
    assert bench.overrides == ["data.packing=true"] and bench.steps == 3


def test_a_stray_word_is_still_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(build_parser(), ["plan", RECIPE, "--gpu", "a100-80g", "stray"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: stray" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a command without overrides takes none
        parse_args(build_parser(), ["env", "optim.lr=1"])


def test_dry_run_applies_a_trailing_override(capsys):
    assert main(["train", "configs/quickstart/instruct.yaml", "--dry-run", "optim.lr=0.000123"]) == 0
    assert "lr: 0.000123" in capsys.readouterr().out
