"""Bad input never kills a run: a dataset mixing every bad-input kind with good records trains to the end, and
`skipped.jsonl` in the output dir lists exactly the bad records (id + reason), counted on the console.
Nothing is ever read from outside the image root."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from rel_helpers import LORA, ReadWatch, log_steps, overrides, stop_after, tiny_config


def _skips(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_watch_sees_a_read_outside_the_root(zoo, tmp_path):
    """Positive control for ReadWatch: without it, the tests below would pass vacuously."""
    with ReadWatch([zoo.outside.parent], tmp_path / "reads.log") as watch:
        zoo.outside.read_bytes()
    assert watch.reads() == [str(zoo.outside.resolve())]


def _zoo_dataset(kind, zoo, tiny_llava, skips, cache_dir):
    from vistune.data_prep import VisualInstructDataset, get_template, load_records
    from vistune.data_prep.batching.cached_dataset import CachedDataset
    from vistune.model import num_image_tokens

    model, processor = tiny_llava
    settings = dict(image_root=zoo.image_root, num_image_tokens=num_image_tokens(model), max_length=128, skips=skips)
    if kind == "memory":
        return VisualInstructDataset(load_records(zoo.path, skips=skips), processor, get_template("vicuna_v1"),
                                     **settings)
    return CachedDataset(zoo.path, processor, get_template("vicuna_v1"), cache_dir=cache_dir, workers=2, **settings)


@pytest.mark.parametrize("kind", ["memory", "cache"])
def test_every_bad_record_is_skipped_with_its_reason_and_every_good_one_loads(zoo, tiny_llava, tmp_path, kind):
    from vistune.data_prep import SkipLog

    skips = SkipLog()
    with ReadWatch([zoo.outside.parent], tmp_path / "reads.log") as watch:
        dataset = _zoo_dataset(kind, zoo, tiny_llava, skips, tmp_path / "cache")
        items = {rid: dataset[i] for i, rid in enumerate(dataset.ids)}
    assert watch.reads() == [], "a file outside the image root was opened"
    assert {s.id: s.problem for s in skips} == zoo.bad
    assert all(s.reason and s.stage in ("read", "tokenize", "image") for s in skips)
    escapes = [s.reason for s in skips if s.problem == "image_escapes_root"]
    assert len(escapes) == 3 and all("outside the image root" in r or "absolute path" in r for r in escapes)
    for rid in zoo.good:  # converted (CMYK, 16-bit, palette, animated), EXIF-rotated, truncated-to-fit: all train
        assert items[rid] is not None, rid
        assert torch.isfinite(items[rid]["pixel_values"]).all()
    height, width = dataset.transform.size
    for rid in zoo.converted:
        assert items[rid]["pixel_values"].shape == (1, 3, height, width)
    i = dataset.ids.index("long_later_reply")
    kept, total = dataset.turns(i)
    assert kept == 1 < total and len(dataset[i]["input_ids"]) <= 128


def test_the_cache_gives_the_in_memory_ids_labels_and_skips(zoo, tiny_llava, tmp_path):
    """Item by item the same tensors, and the same skipped records with the same reasons, on the zoo."""
    from dataclasses import asdict

    from vistune.data_prep import SkipLog

    logs = {kind: SkipLog() for kind in ("memory", "cache")}
    memory, cache = (_zoo_dataset(kind, zoo, tiny_llava, logs[kind], tmp_path / "cache") for kind in logs)
    assert memory.ids == cache.ids and memory.lengths == cache.lengths.tolist()
    for i in range(len(memory)):
        a, b = memory[i], cache[i]
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
            assert torch.equal(a["pixel_values"], b["pixel_values"])
    assert [asdict(s) for s in logs["memory"]] == [asdict(s) for s in logs["cache"]]


@pytest.mark.parametrize("loader", ["memory", "cache"])
def test_training_over_the_zoo_finishes_and_lists_exactly_the_bad_records(zoo, tmp_path, capsys, loader):
    """`vistune train` with DataLoader workers and batches that can be all-bad (batch 1, accumulation 2)."""
    from vistune.cli import main

    out = tmp_path / "run"
    args = ["train", str(LORA), *overrides(zoo.path, zoo.image_root, out, **{"data.loader": loader,
        "data.cache_dir": tmp_path / "cache",
        "optim.max_steps": -1, "optim.epochs": 1, "optim.per_device_batch_size": 1, "optim.grad_accum": 2,
        "data.num_workers": 2, "data.max_length": 128})]
    with ReadWatch([zoo.outside.parent], tmp_path / "reads.log") as watch:
        assert main(args) == 0
    assert watch.reads() == [], "a file outside the image root was opened (main process or a worker)"

    skipped = _skips(out / "skipped.jsonl")
    assert Counter(s["id"] for s in skipped) == Counter(list(zoo.bad)), "each bad record exactly once, nothing else"
    assert {s["id"]: s["problem"] for s in skipped} == zoo.bad
    assert all(s["reason"] and s["source"] == str(zoo.path) for s in skipped)
    console = capsys.readouterr().out
    assert f"skipped {len(zoo.bad)} record(s):" in console
    for (stage, problem), n in Counter((s["stage"], s["problem"]) for s in skipped).items():
        assert f"{n:6d}  {stage:9s} {problem}" in console
    n_samples = len(zoo.good) + sum(s["stage"] == "image" for s in skipped)  # image skips show up only when read
    assert f"dataset: {n_samples} samples" in console and "done:" in console
    steps = log_steps(out)
    assert steps and steps[-1]["step"] == -(-n_samples // 2)
    # Every logged step either trained with a finite loss or was skipped for want of a supervised token
    # (a batch whose samples all failed to load): never a NaN, never a silent loss-0 update.
    assert all(s["loss"] == s["loss"] if "loss" in s else s.get("skipped_steps", 0) > 0 for s in steps)


def test_a_batch_of_only_bad_samples_keeps_every_key():
    """The collator's empty batch still carries labels (the Trainer counts them) and trains as loss 0."""
    from vistune.data_prep import DataCollator

    batch = DataCollator(pad_token_id=0)([None, None])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (0, 0)
    assert batch["ids"] == []


def test_an_interrupted_and_resumed_run_still_lists_each_bad_record_once(zoo, tmp_path):
    """Image skips seen before the interruption (in workers) survive it; nothing is listed twice after resume."""
    from vistune.train.stages.engine import train

    out = tmp_path / "run"
    config = tiny_config(zoo.path, zoo.image_root, out, **{
        "optim.max_steps": -1, "optim.epochs": 2, "optim.per_device_batch_size": 4, "data.num_workers": 2,
        "save_steps": 3, "data.group_by_length": False})
    assert train(config, callbacks=[stop_after(3)]).global_step == 3
    first = _skips(out / "skipped.jsonl")
    assert {s["stage"] for s in first} == {"read", "tokenize", "image"}
    result = train(config)
    assert result.status == "done" and result.global_step > 3
    skipped = _skips(out / "skipped.jsonl")
    assert Counter(s["id"] for s in skipped) == Counter(list(zoo.bad))
