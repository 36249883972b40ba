"""Dataset, collator and sampler: what the training room gets per item and per batch."""

from __future__ import annotations

import pytest
import torch
from data_fixtures import llava, write_json

from vistune import IGNORE_INDEX
from vistune.data_prep import (
    DataCollator,
    LengthGroupedSampler,
    SkipLog,
    VisualInstructDataset,
    get_template,
    load_records,
)

LOADERS = ("memory", "cache")  # every dataset test runs on both: the same items, ids, labels and skips


def open_dataset(kind, path, processor, template, *, skips, cache_dir, **settings):
    """The in-memory dataset or the cached one over the same records file."""
    if kind == "memory":
        return VisualInstructDataset(load_records(path, skips=skips), processor, template, skips=skips, **settings)
    from vistune.data_prep.batching.cached_dataset import CachedDataset

    return CachedDataset(path, processor, template, skips=skips, cache_dir=cache_dir, **settings)


def make_dataset(tmp_path, image_root, processor, max_length=200, kind="memory"):
    data = [
        llava("img", "a.png", ("What colour?", "red")),
        llava("text", None, ("Say hi", "hi")),
        llava("two", ["a.png", "b.png"], ("Compare", "different")),
        llava("gone", "missing.png", ("What colour?", "red")),
        llava("long", "a.png", ("x " * 300, "y")),
    ]
    skips = SkipLog()
    ds = open_dataset(kind, write_json(tmp_path / "d.json", data), processor, get_template("vicuna_v1"), skips=skips,
                      cache_dir=tmp_path / "cache", image_root=image_root, num_image_tokens=16, max_length=max_length)
    return ds, skips


@pytest.mark.parametrize("kind", LOADERS)
def test_items_and_skips(tmp_path, image_root, tiny_processor, kind):
    ds, skips = make_dataset(tmp_path, image_root, tiny_processor, kind=kind)
    assert ds.ids == ["img", "text", "two", "gone"]
    assert [(s.id, s.stage, s.problem) for s in skips] == [("long", "tokenize", "too_long")]
    item = ds[0]
    assert item["id"] == "img" and item["pixel_values"].shape == (1, 3, 32, 32)
    assert item["input_ids"].shape == item["labels"].shape and item["input_ids"].dtype == torch.long
    assert ds[1]["pixel_values"].shape == (0, 3, 32, 32)
    assert ds[2]["pixel_values"].shape == (2, 3, 32, 32)
    assert ds[3] is None and skips.items[-1].problem == "missing_image" and skips.items[-1].stage == "image"
    lengths = ds.lengths
    assert lengths[0] == len(ds[0]["input_ids"]) > 0 and lengths[1] == -len(ds[1]["input_ids"])


@pytest.mark.parametrize("kind", LOADERS)
def test_collator_pads_right_and_concatenates_images(tmp_path, image_root, tiny_processor, kind):
    ds, _ = make_dataset(tmp_path, image_root, tiny_processor, kind=kind)
    pad = tiny_processor.tokenizer.pad_token_id
    samples = [ds[0], ds[1], ds[3], ds[2]]
    batch = DataCollator(pad)(samples)
    assert batch["ids"] == ["img", "text", "two"]
    longest = max(len(s["input_ids"]) for s in samples if s)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (3, longest)
    n = len(ds[1]["input_ids"])
    assert batch["attention_mask"][1].tolist() == [1] * n + [0] * (longest - n)
    assert (batch["labels"][1, n:] == IGNORE_INDEX).all() and (batch["input_ids"][1, n:] == pad).all()
    assert torch.equal(batch["pixel_values"][0], ds[0]["pixel_values"][0])
    assert torch.equal(batch["pixel_values"][1:], ds[2]["pixel_values"])
    left = DataCollator(pad, padding_side="left")([ds[0], ds[1]])
    assert left["attention_mask"][1, -1] == 1 and left["attention_mask"][1, 0] == 0


def test_text_only_batch_has_no_pixel_values(tmp_path, image_root, tiny_processor):
    ds, _ = make_dataset(tmp_path, image_root, tiny_processor)
    batch = DataCollator(0)([ds[1], None])
    assert "pixel_values" not in batch and batch["ids"] == ["text"]


def test_sampler_groups_modalities_and_is_deterministic():
    lengths = [10, -5, 30, -7, 20, 40, -9, 15, 25, -3, 35, 12]
    sampler = LengthGroupedSampler(lengths, batch_size=2, world_size=2, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    assert order == list(LengthGroupedSampler(lengths, batch_size=2, world_size=2, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != order
    full = [order[k:k + 4] for k in range(0, 8, 4)]  # the full megabatches come first
    for chunk in full:
        signs = {lengths[i] > 0 for i in chunk}
        assert len(signs) == 1  # one modality per megabatch
        assert [abs(lengths[i]) for i in chunk] == sorted((abs(lengths[i]) for i in chunk), reverse=True)



def test_sampler_order_is_pinned_for_lists_and_arrays():
    """The order of the list-based sampler it replaced (a resumed run must see the same order), ties included; the
    cache hands it a numpy array of lengths."""
    import numpy as np

    lengths = [10, -5, 30, -7, 20, 40, -9, 15, 25, -3, 35, 12, 30, -5, 30]
    for given in (lengths, np.array(lengths)):
        sampler = LengthGroupedSampler(given, batch_size=2, world_size=2, seed=3)
        assert list(sampler) == sampler.indices() == [5, 10, 12, 4, 6, 3, 13, 9, 2, 8, 7, 0, 14, 11, 1]
        sampler.set_epoch(1)
        assert list(sampler) == [5, 12, 7, 0, 6, 3, 13, 1, 10, 2, 14, 8, 4, 11, 9]

@pytest.mark.parametrize("kind", LOADERS)
def test_skips_from_dataloader_workers_reach_the_streamed_file(tmp_path, image_root, tiny_processor, kind):
    from torch.utils.data import DataLoader

    stream = tmp_path / "run" / "skipped.jsonl"
    skips = SkipLog(stream_to=stream)
    path = write_json(tmp_path / "d.json", [llava("ok", "a.png", ("q", "a")), llava("gone", "missing.png", ("q", "a"))])
    ds = open_dataset(kind, path, tiny_processor, get_template("vicuna_v1"), skips=skips, cache_dir=tmp_path / "c",
                      image_root=image_root, num_image_tokens=16, max_length=200)
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=DataCollator(0))
    (batch,) = list(loader)
    assert batch["ids"] == ["ok"]
    assert [(s.id, s.stage, s.problem) for s in SkipLog.read_jsonl(stream)] == [("gone", "image", "missing_image")]
