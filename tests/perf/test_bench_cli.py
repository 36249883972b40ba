"""`vistune bench` end to end on the tiny preset (2 steps, two variants interleaved); `vistune train` logs MFU."""

from __future__ import annotations

import json

import yaml


def _config(tmp_path, mixed_data) -> str:
    path, root = mixed_data
    config = {"stage": "instruct", "method": "lora", "model": {"preset": "tiny", "dtype": "float32"},
              "data": {"path": str(path), "image_root": str(root), "template": "vicuna_v1", "max_length": 256,
                       "group_by_length": False, "num_workers": 0},
              "lora": {"r": 4, "alpha": 8}, "output_dir": str(tmp_path / "run"),
              "optim": {"max_steps": 2, "per_device_batch_size": 4, "bf16": False, "tf32": False,
                        "gradient_checkpointing": False},
              "save_steps": 0, "resume": "none"}
    out = tmp_path / "bench.yaml"
    out.write_text(yaml.safe_dump(config))
    return str(out)


def test_bench_cli_smoke(tmp_path, mixed_data, capsys):
    from vistune.cli import main

    out = tmp_path / "bench.json"
    rc = main(["bench", _config(tmp_path, mixed_data), "--compare", "data.packing=false,true", "--steps", "2",
               "--warmup", "1", "--rounds", "1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "data.packing=true" in text and "MFU" in text
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["runs"]] == ["data.packing=false", "data.packing=true"]
    packed = result["runs"][1]
    assert packed["steps"] == 2 and packed["padding_fraction"] == 0.0 and packed["samples_per_s"] > 0
    assert result["runs"][0]["padding_fraction"] > 0
    assert 0 < packed["mfu"] < 1 and result["peak"]["flops_per_s"] > 0
    assert "data.packing=true" in result["ratios"]


def test_bench_refuses_an_unknown_key(tmp_path, mixed_data, capsys):
    from vistune.cli import main

    assert main(["bench", _config(tmp_path, mixed_data), "--compare", "data.pakcing=false,true"]) == 2
    assert "data.packing" in capsys.readouterr().out


def test_train_log_reports_tokens_per_s_and_mfu_packed(tmp_path, mixed_data):
    from vistune.train.run.config import load_config
    from vistune.train.stages.engine import train

    config = load_config(_config(tmp_path, mixed_data), ["data.packing=true", "optim.cross_entropy=chunked"])
    train(config)
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for entry in lines:
        assert entry["tokens_per_s"] > 0 and 0 < entry["mfu"] < 1 and entry["padding"] == 0.0
