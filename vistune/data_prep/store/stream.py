"""Training from WebDataset shards without holding the data: an IterableDataset that splits itself across ranks
and DataLoader workers, shuffles with a seeded buffer, groups lengths inside it and resumes exactly.

The epoch's order is a pure function of (seed, epoch) computed from the shard index alone: shards in a seeded
order, a seeded shuffle buffer over their samples, then windows of one step's samples (batch x ranks) sorted
by size and dealt round-robin to ranks, so every rank's batch holds similar lengths. Rank r keeps window
positions r, r + world, ...; worker w of a rank makes batches w, w + workers, ..., which is exactly the order
the DataLoader hands them out. A resumed run knows how many batches of the epoch were trained (the stream
position in the checkpoint): it yields those as empty placeholders, which the trainer's own skip discards
without a byte being read.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vistune.data_prep.images.load import ImageTransform, decode_image
from vistune.data_prep.records import RecordError
from vistune.data_prep.records.readers import DataFileError, raw_id, read_one
from vistune.data_prep.records.skips import SkipLog
from vistune.data_prep.store.shards import read_index
from vistune.data_prep.text.templates import Template
from vistune.data_prep.text.tokenize import tokenize_record


def buffer_shuffle(items: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """WebDataset's shuffle buffer, deterministic: fill `size`, then emit a random slot and refill it."""
    if size <= 1:
        return items
    out, buf = [], list(items[:size])
    for x in items[size:]:
        j = int(rng.integers(len(buf)))
        out.append(buf[j])
        buf[j] = x
    rng.shuffle(buf)
    return np.asarray(out + buf, dtype=items.dtype)


class StreamDataset(IterableDataset):
    """Items as VisualInstructDataset's ({"id", "input_ids", "labels", "pixel_values"} or None), from tar shards."""

    shards_itself = True  # the trainer must not wrap it in another per-rank splitter

    def __init__(self, directory: str | Path, processor, template: Template, *, num_image_tokens: int,
                 max_length: int, aspect: str = "pad", skips: SkipLog | None = None, source: str = "-",
                 seed: int = 0, shuffle_buffer: int = 1000):
        self.directory = Path(directory)
        refuse_anyres(processor, self.directory)
        self.processor, self.template = processor, template
        self.num_image_tokens, self.max_length = num_image_tokens, max_length
        self.transform = ImageTransform(processor.image_processor, aspect)
        self.skips = skips if skips is not None else SkipLog()
        self.source, self.seed, self.shuffle_buffer = source, seed, shuffle_buffer
        shards = read_index(self.directory)
        if not shards:
            raise ValueError(f"{self.directory}: no .tar shards")
        self.files = [s["file"] for s in shards]
        self.members = [m for s in shards for m in s["samples"]]  # per sample: [[name, offset, size], ...]
        self.shard_of = np.concatenate([np.full(len(s["samples"]), k, dtype=np.int32) for k, s in enumerate(shards)])
        self.sizes = np.array([sum(m[2] for m in sample) for sample in self.members], dtype=np.int64)
        self.rank, self.world_size, self.batch_size = 0, 1, 1
        self.epoch, self.resume_epoch, self.resume_batches = 0, -1, 0

    # -- the plan ---------------------------------------------------------------------------------------------
    def configure(self, rank: int, world_size: int, batch_size: int) -> None:
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, batches: int) -> None:
        """The first `batches` batches of `epoch` were trained before the checkpoint: yield them empty."""
        self.epoch, self.resume_epoch, self.resume_batches = epoch, epoch, batches

    def __len__(self) -> int:
        return len(self.shard_of) // self.world_size

    @property
    def lengths(self) -> list[int]:
        """Token lengths are unknown until a sample is read: every sample is taken as max_length long (the worst
        case), so memory decisions made from lengths (gradient checkpointing auto) err on the safe side."""
        return [self.max_length] * len(self.shard_of)

    def batches_per_epoch(self, world_size: int, batch_size: int) -> int:
        return -(-(len(self.shard_of) // world_size) // batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """This rank's sample indices for `epoch` (the tail of fewer than world_size samples is left out)."""
        rng = np.random.default_rng([self.seed, epoch])
        shard_order = rng.permutation(len(self.files))
        seq = np.concatenate([np.flatnonzero(self.shard_of == k) for k in shard_order])
        seq = buffer_shuffle(seq, self.shuffle_buffer, rng)
        seq = seq[: len(seq) // self.world_size * self.world_size]
        window = self.batch_size * self.world_size
        grouped = [sorted(seq[a:a + window].tolist(), key=lambda i: (-self.sizes[i], i))
                   for a in range(0, len(seq), window)]
        return np.asarray([i for w in grouped for i in w[self.rank::self.world_size]], dtype=np.int64)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        mine = self.order(self.epoch)
        skip = self.resume_batches if self.epoch == self.resume_epoch else 0
        n_batches = -(-len(mine) // self.batch_size)
        files: dict[int, object] = {}
        try:
            for b in range(worker, n_batches, workers):
                batch = mine[b * self.batch_size:(b + 1) * self.batch_size]
                for i in batch:
                    yield None if b < skip else self.sample(int(i), files)
        finally:
            for f in files.values():
                f.close()

    # -- one sample -----------------------------------------------------------------------------------------------
    def sample(self, i: int, files: dict | None = None) -> dict | None:
        """Sample `i` tokenised, with its images, or None (skipped and logged, as the other datasets do)."""
        files = {} if files is None else files
        shard = int(self.shard_of[i])
        if shard not in files:
            files[shard] = open(self.directory / self.files[shard], "rb")  # noqa: SIM115 - closed by __iter__
        f = files[shard]
        members = {name.split(".", 1)[1]: (offset, size) for name, offset, size in self.members[i]}
        where = f"{self.files[shard]}:{self.members[i][0][0]}"
        raw = None
        try:
            raw = json.loads(_read(f, *members["json"]))
            record = read_one(raw, i, False, None)
        except (RecordError, KeyError, ValueError) as err:
            problem = err if isinstance(err, RecordError) else RecordError("bad_json", f"{where}: {err}")
            self._skip(raw_id(raw, i), problem, "read", i)
            return None
        try:
            tok = tokenize_record(record, self.processor.tokenizer, self.template,
                                  num_image_tokens=self.num_image_tokens, max_length=self.max_length)
        except RecordError as err:
            self._skip(record.id, err, "tokenize", None)
            return None
        try:
            pixels = [self.transform(decode_image(io.BytesIO(_read(f, *members[name])), f"{where}/{name}"))
                      for name in record.images[:tok.num_images]]  # truncation may drop later images
        except (RecordError, KeyError) as err:
            problem = err if isinstance(err, RecordError) else RecordError("missing_image", f"{where}: no {err}")
            self._skip(record.id, problem, "image", None)
            return None
        empty = torch.zeros((0, 3, *self.transform.size), dtype=torch.float32)
        return {"id": record.id, "input_ids": torch.tensor(tok.input_ids, dtype=torch.long),
                "labels": torch.tensor(tok.labels, dtype=torch.long),
                "pixel_values": torch.stack(pixels) if pixels else empty}

    def _skip(self, rid: str, err: RecordError, stage: str, index: int | None) -> None:
        self.skips.add(id=rid, source=self.source, problem=err.problem, reason=str(err), stage=stage, index=index,
                       field=err.field)

    # -- the loader -----------------------------------------------------------------------------------------------
    def loader(self, collate_fn, *, batch_size: int, num_workers: int, rank: int, world_size: int) -> StreamLoader:
        self.configure(rank, world_size, batch_size)
        return StreamLoader(self, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_fn)


class StreamLoader(DataLoader):
    """A DataLoader over a StreamDataset whose set_epoch reaches the dataset (workers get it with their copy)."""

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


def refuse_anyres(processor, directory: Path) -> None:
    """Streaming counts one fixed image-token count (LLaVA-1.5); AnyRes (llava_next / llava_onevision) counts
    each image by its size, which the shard index does not hold yet: a clear error instead of wrong ids."""
    from vistune.model.anyres import is_anyres

    if processor is not None and is_anyres(processor):
        raise DataFileError(f"{directory}: streaming .tar shards supports model.arch llava only (AnyRes counts each "
                            "image's tokens by its size); train AnyRes from a JSON / JSONL data file "
                            "(data.loader=cache or memory)")


def _read(f, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)
