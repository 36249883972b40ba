"""Training from WebDataset shards: ranks see disjoint samples that cover the epoch once, whatever the worker count;
a run killed with SIGKILL mid-epoch and resumed continues with the uninterrupted run's losses; the doctor reads
shards too."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rel_helpers import log_steps, subprocess_env, tiny_config


@pytest.fixture(scope="module")
def shards(tmp_path_factory, tiny_parts):
    """20 synthetic samples in 4 shards (+ the records file they came from)."""
    from vistune.data_prep import synthesize
    from vistune.data_prep.store.shards import write_shards

    root = tmp_path_factory.mktemp("shards")
    paths = synthesize(root / "data", n=24, seed=2, n_heldout=0)
    records = paths["instruct"].with_name("twenty.json")
    records.write_text(json.dumps(json.loads(paths["instruct"].read_text())[:20]))
    report = write_shards(records, root / "shards", per_shard=5)
    assert report.samples == 20 and report.shards == 4
    return root / "shards", records


def _stream(directory, processor, **kw):
    from vistune.data_prep import get_template
    from vistune.data_prep.store.stream import StreamDataset

    return StreamDataset(directory, processor, get_template("vicuna_v1"), num_image_tokens=16, max_length=256,
                         seed=3, shuffle_buffer=6, **kw)


def _ids(dataset, workers: int) -> list:
    from vistune.data_prep import DataCollator

    loader = dataset.loader(DataCollator(0), batch_size=2, num_workers=workers, rank=dataset.rank,
                            world_size=dataset.world_size)
    return [batch["ids"] for batch in loader]


def test_two_ranks_see_disjoint_samples_that_cover_the_epoch_once(shards, tiny_llava):
    _, processor = tiny_llava
    directory, records = shards
    every = {r["id"] for r in json.loads(records.read_text())}
    orders = {}
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            ds = _stream(directory, processor)
            ds.configure(rank, 2, 2)
            ds.set_epoch(epoch)
            batches = _ids(ds, workers=2)
            assert batches == _ids(ds, workers=0)  # the same batches in the same order with or without workers
            assert len(batches) == ds.batches_per_epoch(2, 2) == 5 and len(ds) == 10
            seen.append([i for b in batches for i in b])
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == sorted(every)  # each sample once
        orders[epoch] = seen
    assert orders[0] != orders[1]  # a new shuffle every epoch


def test_a_resumed_stream_skips_trained_batches_without_reading_them(shards, tiny_llava):
    _, processor = tiny_llava
    directory, _ = shards
    whole = _stream(directory, processor)
    whole.configure(0, 1, 2)
    resumed = _stream(directory, processor)
    resumed.configure(0, 1, 2)
    resumed.resume_at(0, 4)
    reads = []
    resumed.sample = lambda i, files=None, _orig=resumed.sample: reads.append(i) or _orig(i, files)
    a, b = _ids(whole, workers=0), _ids(resumed, workers=0)
    assert b[:4] == [[]] * 4 and b[4:] == a[4:]
    assert len(reads) == 20 - 8  # the 4 trained batches (8 samples) were never read


KILL = """
import os, signal, sys
from transformers import TrainerCallback
sys.path.insert(0, {tests!r})
from rel_helpers import tiny_config
from vistune.train.stages.engine import train

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)

train(tiny_config(*{args!r}, **{extra!r}), callbacks=[Kill()])
"""


@pytest.mark.slow
def test_kill_9_mid_epoch_and_resume_gives_the_uninterrupted_losses(shards, tmp_path):
    from pathlib import Path

    from vistune.train.stages.engine import train

    directory, records = shards
    extra = {"data.path": str(directory), "data.loader": "stream", "data.shuffle_buffer": 6, "data.num_workers": 2,
             "optim.max_steps": 9, "optim.per_device_batch_size": 2, "optim.grad_accum": 2, "save_steps": 3,
             "lora.dropout": 0.1, "optim.warmup_ratio": 2}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train(tiny_config(directory, records.parent, straight, **extra)).global_step == 9  # 5 steps per epoch
    code = KILL.format(tests=str(Path(__file__).parent), kill_at=7, extra=extra,
                       args=(str(directory), str(records.parent), str(killed)))
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (killed / "checkpoint-6").is_dir() and not (killed / "checkpoint-9").exists()  # killed in epoch 2
    assert train(tiny_config(directory, records.parent, killed, **extra)).global_step == 9  # resume: auto
    a = {s["step"]: s for s in log_steps(straight)}
    b = {s["step"]: s for s in log_steps(killed)}
    assert sorted(b) == sorted(a) == list(range(1, 10))
    assert [b[k]["loss"] for k in a] == pytest.approx([a[k]["loss"] for k in a], abs=1e-4)
    assert len({s["loss"] for s in a.values()}) > 1


def test_the_doctor_checks_shards(shards, tmp_path):
    from vistune.data_prep.doctor import diagnose
    from vistune.data_prep.text.text_side import load_text_side

    directory, records = shards
    report = diagnose(directory, text_side=load_text_side("tiny"), max_length=256)
    assert report.ok and report.total == 20 and len(report.good_ids) == 20
    broken = tmp_path / "broken"
    broken.mkdir()
    data = (directory / "shard-000000.tar").read_bytes()
    index = json.loads((directory / "index.json").read_text())
    name, offset, size = index["shards"][0]["samples"][1][1]  # the second sample's image
    (broken / "shard-000000.tar").write_bytes(data[:offset] + b"\0" * size + data[offset + size:])
    (broken / "index.json").write_text(json.dumps({**index, "shards": index["shards"][:1]}))
    report = diagnose(broken, text_side=load_text_side("tiny"), max_length=256)
    assert [(s.problem, s.stage) for s in report.errors] == [("corrupt_image", "validate")] and report.total == 5


def test_anyres_streams_are_refused_with_a_clear_error(shards, tiny_parts):
    """A stream counts one fixed image-token count: llava_next (counts by size) stops before any wrong id."""
    from vistune.data_prep import DataFileError
    from vistune.data_prep.doctor import diagnose
    from vistune.model import build_llava

    directory, _ = shards
    _, processor = build_llava(str(tiny_parts[0]), str(tiny_parts[1]), arch="llava_next")
    with pytest.raises(DataFileError, match="model.arch llava only"):
        _stream(directory, processor)
    with pytest.raises(DataFileError, match="model.arch llava only"):
        diagnose(directory, arch="llava_next")
