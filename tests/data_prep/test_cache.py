"""The tokenised cache: the in-memory path's items and skips, rebuilt only when its key changes, one build per key."""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import asdict

import pytest
import torch
from data_fixtures import llava, write_json

from vistune.data_prep import SkipLog, VisualInstructDataset, get_template, load_records
from vistune.data_prep.batching.cached_dataset import CachedDataset
from vistune.data_prep.store import cache_build
from vistune.data_prep.store.cache import INFO_FILE, ensure_cache


def records(n=23):
    """Multi-turn records, text-only ones, a too-long one, duplicates of ids across chunks, a missing image."""
    out = []
    for i in range(n):
        turns = [(f"question {i} " + "word " * (i % 5), f"answer {i}"), ("and then?", "more " * (i % 7 + 1))][: 1 + i % 2]
        out.append(llava(f"r{i}", None if i % 4 == 3 else ("b.png" if i % 3 else "a.png"), *turns))
    out[5] = llava("r1", "a.png", ("dup", "licate"))  # a later duplicate id (another chunk with CHUNK 4)
    out[9] = llava("long", "a.png", ("x " * 400, "y"))  # too_long
    out[12] = llava("gone", "missing.png", ("q", "a"))  # image skip when read
    out.append({"id": "broken", "conversations": "no"})  # bad_shape
    return out


@pytest.fixture()
def small_chunks(monkeypatch):
    monkeypatch.setattr(cache_build, "CHUNK", 4)  # several chunks and both workers on a small file


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_items_and_skips_equal_the_in_memory_path(tmp_path, image_root, tiny_processor, small_chunks, workers):
    path = write_json(tmp_path / "d.json", records())
    settings = dict(image_root=image_root, num_image_tokens=16, max_length=120, source=path)
    template = get_template("vicuna_v1")
    mem_skips, cache_skips = SkipLog(), SkipLog()
    memory = VisualInstructDataset(load_records(path, skips=mem_skips), tiny_processor, template, skips=mem_skips,
                                   **settings)
    cached = CachedDataset(path, tiny_processor, template, skips=cache_skips, cache_dir=tmp_path / "c",
                           workers=workers, **settings)
    assert cached.ids == memory.ids and cached.lengths.tolist() == memory.lengths and len(cached) == len(memory) == 21
    for i in range(len(memory)):
        a, b = memory[i], cached[i]
        if a is None:
            assert b is None
            continue
        assert a["id"] == b["id"] and torch.equal(a["input_ids"], b["input_ids"])
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["pixel_values"], b["pixel_values"])
        assert cached.turns(i) == memory.turns(i)
    assert [asdict(s) for s in cache_skips] == [asdict(s) for s in mem_skips]
    assert {s.problem for s in mem_skips} == {"duplicate_id", "too_long", "bad_shape", "missing_image"}


def test_llava_next_cache_expands_each_image_to_its_own_count_as_the_in_memory_path(tmp_path, image_root,
                                                                                     tiny_next_processor, small_chunks):
    """AnyRes: counts read from each image's size at build time, truncation over per-image lengths, the too_long
    reason naming them, and the images the ids kept: all identical to the in-memory path."""
    from PIL import Image

    Image.new("RGB", (90, 30), (0, 255, 0)).save(image_root / "wide.png")
    Image.new("RGB", (30, 100), (0, 0, 0)).save(image_root / "tall.png")
    data = [llava(f"n{i}", name, ("what is it? " + "word " * (i % 3), f"answer {i}"))
            for i, name in enumerate(["a.png", "b.png", "wide.png", "tall.png", None, "wide.png", "b.png"])]
    data.append(llava("two", ["b.png", "wide.png"], ("both?", "yes"), ("more?", "no")))
    data.append(llava("cut", "a.png", ("first", "one"), ("next " * 40, "two")))  # the second exchange cannot fit
    data.append(llava("toolong", ["tall.png", "wide.png", "a.png", "b.png"], ("all?", "yes")))  # too_long
    data.append({"id": "late", "image": ["b.png", "tall.png"], "conversations": [  # truncated to its first turn
        {"from": "human", "value": "<image>\nfirst?"}, {"from": "gpt", "value": "one"},
        {"from": "human", "value": "<image>\n" + "then " * 40}, {"from": "gpt", "value": "two"}]})
    data.append(llava("gone", "missing.png", ("q", "a")))
    path = write_json(tmp_path / "d.json", data)
    settings = dict(image_root=image_root, num_image_tokens=16, max_length=200, source=path)
    template = get_template("vicuna_v1")
    mem_skips, cache_skips = SkipLog(), SkipLog()
    memory = VisualInstructDataset(load_records(path, skips=mem_skips), tiny_next_processor, template,
                                   skips=mem_skips, **settings)
    cached = CachedDataset(path, tiny_next_processor, template, skips=cache_skips, cache_dir=tmp_path / "c",
                           workers=2, **settings)
    assert cached.ids == memory.ids and cached.lengths.tolist() == memory.lengths and len(cached) == len(memory) == 10  # gone: its size is unreadable
    image_id = tiny_next_processor.tokenizer.convert_tokens_to_ids("<image>")
    counts = set()
    for i in range(len(memory)):
        a, b = memory[i], cached[i]
        if a is None:
            assert b is None
            continue
        assert a.keys() == b.keys() and a["id"] == b["id"] and torch.equal(a["input_ids"], b["input_ids"])
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["pixel_values"], b["pixel_values"])
        assert torch.equal(a.get("image_sizes", torch.zeros(0)), b.get("image_sizes", torch.zeros(0)))
        assert cached.turns(i) == memory.turns(i)
        if "image_sizes" in a and len(a["image_sizes"]) == 1:
            counts.add(int((a["input_ids"] == image_id).sum()))
    assert len(counts) >= 3  # the sizes give different counts, so a fixed count could not pass
    assert [asdict(s) for s in cache_skips] == [asdict(s) for s in mem_skips]
    too_long = [s for s in mem_skips if s.problem == "too_long"]
    assert [s.id for s in too_long] == ["toolong"] and "image tokens: " in too_long[0].reason
    assert {s.problem for s in mem_skips} == {"too_long", "missing_image"}
    cut = memory.ids.index("cut")
    assert memory.turns(cut) == (1, 2)
    assert memory.turns(memory.ids.index("late")) == (1, 2)
    fixed = ensure_cache(path, tiny_next_processor.tokenizer, template, num_image_tokens=16, max_length=200,
                         cache_dir=tmp_path / "c", workers=1)
    assert fixed != cached.cache_dir  # a llava cache of the same file is never reused for llava_next


def test_a_second_run_reuses_the_cache_and_a_changed_key_rebuilds(tmp_path, tiny_processor):
    path = write_json(tmp_path / "d.json", records(16))
    template = get_template("vicuna_v1")

    def build(**kw):
        args = dict(num_image_tokens=16, max_length=120, cache_dir=tmp_path / "c", workers=1) | kw
        return ensure_cache(path, tiny_processor.tokenizer, template, **args)

    first = build()
    built = json.loads((first / INFO_FILE).read_text())["pid"]
    assert build() == first and json.loads((first / INFO_FILE).read_text())["pid"] == built
    others = {build(max_length=200), build(num_image_tokens=8),
              ensure_cache(path, tiny_processor.tokenizer, get_template("plain"), num_image_tokens=16, max_length=120,
                           cache_dir=tmp_path / "c", workers=1)}
    assert first not in others and len(others) == 3
    with open(path, "a", encoding="utf-8") as f:
        f.write(" ")  # same records, other bytes: the key is the content
    assert build() != first


def _race(path, tokenizer, cache_dir, go, out):
    go.wait()
    target = ensure_cache(path, tokenizer, get_template("vicuna_v1"), num_image_tokens=16, max_length=120,
                          cache_dir=cache_dir, workers=1)
    out.put((os.getpid(), str(target)))


def test_two_runs_building_at_once_build_once_and_share_it(tmp_path, tiny_processor):
    path = write_json(tmp_path / "d.json", records(40))
    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, tiny_processor.tokenizer, tmp_path / "c", go, out)) for _ in "ab"]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
    (_, a), (_, b) = out.get(timeout=5), out.get(timeout=5)
    assert a == b and all(p.exitcode == 0 for p in procs)
    builds = (tmp_path / "c" / "builds.log").read_text().splitlines()
    assert len(builds) == 1 and json.loads(builds[0])["records"] == 38  # 41 items: a duplicate, too_long, bad_shape
    assert [p.name for p in (tmp_path / "c").iterdir() if ".tmp" in p.name] == []


def test_a_pickled_table_maps_the_file_again(tmp_path, tiny_processor):
    """A DataLoader worker started with spawn gets the table by pickling: the path, not a copy of the data."""
    import pickle

    from vistune.data_prep.store.cache import CachedTable

    path = write_json(tmp_path / "d.json", records(16))
    table = CachedTable(ensure_cache(path, tiny_processor.tokenizer, get_template("vicuna_v1"), num_image_tokens=16,
                                     max_length=120, cache_dir=tmp_path / "c", workers=1))
    blob = pickle.dumps(table)
    assert len(blob) < 500
    again = pickle.loads(blob)
    for i in range(len(table)):
        assert all((a == b).all() for a, b in zip(table.compact(i), again.compact(i), strict=True))


def test_the_content_hash_is_remembered_until_the_file_changes(tmp_path):
    from vistune.data_prep.store.cache import content_hash, hash_path

    path = tmp_path / "d.json"
    path.write_text("[1, 2]")
    first = content_hash(path, tmp_path / "c")
    assert first == hash_path(path) and (tmp_path / "c" / "hashes.json").is_file()
    assert content_hash(path, tmp_path / "c") == first
    path.write_text("[1, 3]")  # same size, new bytes: the stat changes (mtime), so it is hashed again
    os.utime(path, ns=(1, 1))
    assert content_hash(path, tmp_path / "c") == hash_path(path) != first
