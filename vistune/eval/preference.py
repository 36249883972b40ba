"""Preference accuracy: how often a model gives the chosen reply a higher log-likelihood than the rejected one.

Pairs are read and tokenised exactly as the prefer stage trains on them (`vistune.data_prep.batching.preference`); the
score of a reply is the sum of its scored tokens' log-probabilities given the image and the prompt. Reported
overall and per `question_type` (the synthetic shapes pairs carry one), on pairs the model never trained on.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from vistune.data_prep import ImageTransform, SkipLog, get_template
from vistune.data_prep.batching.preference import PreferenceCollator, load_pairs, tokenize_pairs
from vistune.model import llava_of, num_image_tokens


@torch.no_grad()
def reply_logps(model, batch: dict) -> torch.Tensor:
    """Sum of log p(token) over each row's scored (completion_mask) tokens."""
    llava = llava_of(model)
    inputs = {k: batch[k].to(llava.device) for k in ("input_ids", "attention_mask")}
    if "pixel_values" in batch:
        inputs["pixel_values"] = batch["pixel_values"].to(llava.device, llava.model.multi_modal_projector.linear_1.weight.dtype)
    logits = model(**inputs).logits[:, :-1].float()
    targets = inputs["input_ids"][:, 1:]
    token_logps = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:].to(token_logps.device)).sum(1).cpu()


def preference_accuracy(model, processor, data: str | Path, template: str, *, image_root: str | Path | None = None,
                        max_length: int = 2048, batch_size: int = 16) -> dict:
    """{"accuracy", "pairs", "per_type": {type: accuracy}, "skipped"} of `model` on the pairs in `data`."""
    data = Path(data)
    skips = SkipLog()
    pairs = load_pairs(data, skips=skips)
    rows, kinds = [], []
    for pair, tok in tokenize_pairs(pairs, processor.tokenizer, get_template(template),
                                    num_image_tokens=num_image_tokens(llava_of(model)), max_length=max_length):
        if isinstance(tok, Exception):
            skips.add(id=pair.id, source=str(data), problem=tok.problem, reason=str(tok), stage="tokenize")
            continue
        rows.append({"id": pair.id, "images": pair.images, "image_root": pair.image_root or "",
                     "chosen_ids": tok.chosen_ids, "chosen_mask": tok.chosen_mask,
                     "rejected_ids": tok.rejected_ids, "rejected_mask": tok.rejected_mask})
        kinds.append(pair.chosen.extra.get("question_type", "all"))
    pad = processor.tokenizer.pad_token_id
    collator = PreferenceCollator(pad if pad is not None else 0, ImageTransform(processor.image_processor, "pad"),
                                  str(image_root or data.parent), skips=skips, source=str(data))
    was_training = model.training
    model.eval()
    wins: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = collator(chunk)
        kept = set(batch["ids"])
        logps = reply_logps(model, batch)
        n = len(batch["ids"])
        chosen, rejected = logps[:n], logps[n:]
        chunk_kinds = [k for r, k in zip(chunk, kinds[start:start + batch_size], strict=True) if r["id"] in kept]
        for kind, c, r in zip(chunk_kinds, chosen.tolist(), rejected.tolist(), strict=True):
            wins[kind].append(c > r)
    model.train(was_training)
    every = [w for ws in wins.values() for w in ws]
    return {"accuracy": sum(every) / len(every) if every else 0.0, "pairs": len(every),
            "per_type": {k: sum(v) / len(v) for k, v in sorted(wins.items())}, "skipped": len(skips)}
