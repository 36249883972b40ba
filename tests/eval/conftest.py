"""Eval fixtures: a small synthetic shapes set and a tiny LLaVA trained on it for a few steps, saved to disk."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory):
    from vistune.data_prep import synthesize

    out = tmp_path_factory.mktemp("shapes")
    return synthesize(out, n=48, n_heldout=12, image_size=32)


def _train_briefly(model, processor, data, steps: int = 12, batch_size: int = 4) -> list[float]:
    """A few AdamW steps of stage-2-style training (projector + LLM) on the synthetic instruct set."""
    from vistune.data_prep import DataCollator, VisualInstructDataset, get_template, load_records

    dataset = VisualInstructDataset(
        load_records(data["instruct"]), processor, get_template("vicuna_v1"), image_root=data["instruct"].parent,
        num_image_tokens=int(model.config.image_seq_length), max_length=512,
    )
    collate = DataCollator(pad_token_id=processor.tokenizer.pad_token_id)
    for name, p in model.named_parameters():
        p.requires_grad = "vision_tower" not in name
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    torch.manual_seed(0)
    losses = []
    for step in range(steps):
        idx = [(step * batch_size + k) % len(dataset) for k in range(batch_size)]
        batch = collate([dataset[i] for i in idx])
        batch.pop("ids")
        loss = model(**batch).loss
        losses.append(loss.item())
        loss.backward()
        optim.step()
        optim.zero_grad()
    model.eval()
    return losses


@pytest.fixture(scope="session")
def trained_tiny(tiny_parts, shapes_data, tmp_path_factory):
    """Directory of a tiny LLaVA briefly trained on the shapes set (standard HF Llava layout)."""
    from vistune.data_prep import get_template
    from vistune.model import build_llava

    vision, llm = tiny_parts
    model, processor = build_llava(str(vision), str(llm), chat_template=get_template("vicuna_v1").jinja)
    losses = _train_briefly(model, processor, shapes_data)
    assert sum(losses[-3:]) < sum(losses[:3]), losses  # it did learn something
    out = tmp_path_factory.mktemp("trained-tiny")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
