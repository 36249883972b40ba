"""Loss and perplexity of a model on any held-out conversation file, supervised exactly as in training.

The records are read, templated and masked by vistune.data_prep (the training path), so the number is
the training objective on unseen data: token-weighted mean NLL over the reply tokens, and exp of it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch


@torch.no_grad()
def heldout_loss(model, processor, template: str, data: str | Path, *, image_root: str | Path | None = None,
                 batch_size: int = 8, max_length: int = 2048, aspect: str = "pad", limit: int | None = None) -> dict:
    from vistune.data_prep import DataCollator, SkipLog, VisualInstructDataset, get_template, load_records
    from vistune.model import num_image_tokens

    skips = SkipLog()
    records = load_records(data, skips=skips)[:limit] if limit else load_records(data, skips=skips)
    dataset = VisualInstructDataset(
        records, processor, get_template(template), image_root=image_root or Path(data).parent,
        num_image_tokens=num_image_tokens(model), max_length=max_length, aspect=aspect, skips=skips,
        source=str(data),
    )
    collate = DataCollator(pad_token_id=processor.tokenizer.pad_token_id or 0)
    model.eval()
    device = next(model.parameters()).device
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        if not batch["ids"]:
            continue
        inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "labels")}
        if "pixel_values" in batch:
            inputs["pixel_values"] = batch["pixel_values"].to(device=device, dtype=model.dtype)
        labels = inputs.pop("labels")
        logits = model(**inputs).logits[:, :-1].float()
        target = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="sum")
        total_nll += float(nll)
        total_tokens += int((target != -100).sum())
    loss = total_nll / total_tokens if total_tokens else float("nan")
    return {"loss": loss, "perplexity": math.exp(loss) if total_tokens else float("nan"),
            "tokens": total_tokens, "records": len(dataset), "skipped": len(skips)}
