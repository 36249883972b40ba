"""The training dataset read from the tokenised cache: same items as VisualInstructDataset, nothing held in memory.

Every process maps the same Arrow file; an item's image placeholders are expanded when it is read (each image to
the token count stored for it at build time: fixed, or by size for AnyRes), and its images are loaded then,
exactly as the in-memory dataset does.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from vistune import IMAGE_TOKEN
from vistune.data_prep.batching.dataset import VisualInstructDataset
from vistune.data_prep.images.inputs import AnyresTransform, image_transform
from vistune.data_prep.records import RecordError
from vistune.data_prep.records.skips import SkipLog
from vistune.data_prep.store.cache import CachedTable, anyres_rule, ensure_cache, expand_row, record_of
from vistune.data_prep.text.templates import Template


class CachedDataset(VisualInstructDataset):
    """Items: {"id", "input_ids", "labels", "pixel_values" (AnyRes: + "image_sizes")} or None (image failed), as
    VisualInstructDataset."""

    def __init__(self, path: str | Path, processor, template: Template, *, image_root: str | Path,
                 num_image_tokens: int, max_length: int, aspect: str = "pad", skips: SkipLog | None = None,
                 source: str = "-", fmt: str = "auto", cache_dir: str | Path | None = None,
                 workers: int | None = None):
        self.processor = processor
        self.image_root = Path(image_root)
        self.transform = image_transform(processor, aspect)
        self.skips = skips if skips is not None else SkipLog()
        self.source = source
        self.num_image_tokens = num_image_tokens
        self.image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        anyres = isinstance(self.transform, AnyresTransform)  # counts each image by its size, at build time
        self.cache_dir = ensure_cache(path, processor.tokenizer, template,
                                      num_image_tokens=self.image_token_counts if anyres else num_image_tokens,
                                      image_tokens_rule=anyres_rule(processor, self.image_root) if anyres else None,
                                      max_length=max_length, fmt=fmt, cache_dir=cache_dir, workers=workers)
        self.table = CachedTable(self.cache_dir)
        for s in self.table.skips():  # read and tokenise skips, named as the in-memory path names them
            self.skips.add(id=s.id, source=str(path) if s.stage == "read" else source, problem=s.problem, reason=s.reason, stage=s.stage, index=s.index,
                           field=s.field)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> list[str]:
        return [i for b in self.table.batches for i in b.column("id").to_pylist()]

    @cached_property
    def lengths(self) -> np.ndarray:
        """LLaVA modality lengths (+ with images, - text-only) as one int64 array, read once from the mapped
        columns: 8 bytes a record, where a list of Python ints costs ~40 in every process."""
        lengths = self.table.column("length").astype(np.int64)
        return np.where(self.table.num_images() > 0, lengths, -lengths)

    def turns(self, i: int) -> tuple[int, int]:
        meta = self.table.meta(i)
        return meta["turns_kept"], meta["turns_total"]

    def __getitem__(self, i: int) -> dict | None:
        record = record_of(self.table.meta(i))
        ids, runs, counts = self.table.compact(i)
        try:
            images = self.image_inputs(record, len(counts))  # the images the ids kept
        except RecordError as err:
            self.skips.add(id=record.id, source=self.source, problem=err.problem, reason=str(err), stage="image")
            return None
        input_ids, labels = expand_row(ids, runs, counts, self.image_id)
        return {
            "id": record.id,
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            **images,
        }
