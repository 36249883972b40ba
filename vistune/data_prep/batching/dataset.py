"""The training dataset: records tokenised up front (bad ones skipped and reported), images loaded lazily.

A sample whose image fails to load comes back as None with the reason logged; `DataCollator` drops it,
so one broken file never stops a run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from vistune.data_prep.images import load_image
from vistune.data_prep.images.inputs import AnyresTransform, image_size, image_transform
from vistune.data_prep.records import Record, RecordError
from vistune.data_prep.records.skips import SkipLog
from vistune.data_prep.text.templates import Template
from vistune.data_prep.text.tokenize import TokenizedRecord, tokenize_records


class VisualInstructDataset(Dataset):
    """Items: {"id", "input_ids", "labels", "pixel_values" [n_images, 3, H, W]} or None (image failed).

    With an AnyRes processor (LLaVA-NeXT / OneVision) each image takes as many tokens as its size asks (read from
    the file header while tokenising) and items carry "pixel_values" [n_images, crops, 3, H, W] + "image_sizes"."""

    def __init__(self, records: list[Record], processor, template: Template, *, image_root: str | Path,
                 num_image_tokens: int, max_length: int, aspect: str = "pad", skips: SkipLog | None = None,
                 source: str = "-"):
        self.processor = processor
        self.image_root = Path(image_root)
        self.transform = image_transform(processor, aspect)
        self.skips = skips if skips is not None else SkipLog()
        self.source = source
        self.records: list[Record] = []
        self.tokenized: list[TokenizedRecord] = []
        counts = self.image_token_counts if isinstance(self.transform, AnyresTransform) else num_image_tokens
        for record, tok in tokenize_records(records, processor.tokenizer, template,
                                            num_image_tokens=counts, max_length=max_length):
            if isinstance(tok, RecordError):
                self.skips.add(id=record.id, source=source, problem=tok.problem, reason=str(tok),
                               stage="tokenize", field=tok.field)
                continue
            self.records.append(record)
            self.tokenized.append(tok)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def turns(self, i: int) -> tuple[int, int]:
        """(assistant turns kept after truncation, assistant turns in the record) of item i."""
        return self.tokenized[i].turns_kept, self.tokenized[i].turns_total

    @property
    def lengths(self) -> list[int]:
        """LLaVA modality lengths: +tokens for records with images, -tokens for text-only records."""
        return [len(t.input_ids) if t.num_images else -len(t.input_ids) for t in self.tokenized]

    def __getitem__(self, i: int) -> dict | None:
        record, tok = self.records[i], self.tokenized[i]
        try:
            images = self.image_inputs(record, tok.num_images)
        except RecordError as err:
            self.skips.add(id=record.id, source=self.source, problem=err.problem, reason=str(err), stage="image")
            return None
        return {
            "id": record.id,
            "input_ids": torch.tensor(tok.input_ids, dtype=torch.long),
            "labels": torch.tensor(tok.labels, dtype=torch.long),
            **images,
        }

    def image_token_counts(self, record: Record) -> list[int]:
        """Tokens each of the record's images takes (AnyRes: by its size; RecordError for an unreadable file)."""
        root = record.image_root or self.image_root
        return self.transform.token_counts([image_size(path, root) for path in record.images])

    def image_inputs(self, record: Record, num_images: int | None = None) -> dict[str, torch.Tensor]:
        """The model's image inputs for the record's first `num_images` images (all by default)."""
        root = record.image_root or self.image_root
        paths = record.images[:num_images]
        if not paths:
            return {"pixel_values": torch.zeros((0, 3, *self.transform.size), dtype=torch.float32)}
        inputs = self.transform.encode([load_image(path, root) for path in paths])
        if "image_sizes" in inputs:
            expected = [image_size(path, root) for path in paths]
            if inputs["image_sizes"].tolist() != [list(s) for s in expected]:
                raise RecordError("corrupt_image", f"image sizes {inputs['image_sizes'].tolist()} differ from the "
                                  f"headers' {expected} read when tokenising")
        return inputs

    def pixel_values(self, record: Record) -> torch.Tensor:
        return self.image_inputs(record)["pixel_values"]
