"""Packed, padding-free batches: per-sample losses equal the padded path (fp32, 1e-5), and segments stay apart."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vistune import IGNORE_INDEX


def _per_sample_losses(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Mean next-token CE of each row of a padded batch."""
    out = []
    for row_logits, row_labels in zip(logits, labels):
        out.append(float(F.cross_entropy(row_logits[:-1], row_labels[1:], ignore_index=IGNORE_INDEX)))
    return out


def _packed_losses(logits: torch.Tensor, labels: torch.Tensor, lengths: list[int]) -> list[float]:
    out, start = [], 0
    for n in lengths:
        seg_logits, seg_labels = logits[0, start:start + n], labels[0, start:start + n]
        out.append(float(F.cross_entropy(seg_logits[:-1], seg_labels[1:], ignore_index=IGNORE_INDEX)))
        start += n
    return out


def _model_and_samples(tiny_parts, mixed_data, attn):
    from vistune.data_prep import SkipLog, VisualInstructDataset, get_template, load_records
    from vistune.model import build_llava, num_image_tokens

    vision, llm = tiny_parts
    model, processor = build_llava(str(vision), str(llm), attn_implementation=attn)
    model.eval()
    path, root = mixed_data
    dataset = VisualInstructDataset(load_records(str(path), skips=SkipLog()), processor, get_template("vicuna_v1"),
                                    image_root=root, num_image_tokens=num_image_tokens(model), max_length=512)
    samples = [dataset[i] for i in range(len(dataset))]
    return model, processor, [s for s in samples if s is not None and len(s["pixel_values"])][:6]


@torch.no_grad()
def test_packed_per_sample_losses_equal_padded(tiny_parts, mixed_data):
    from vistune.data_prep import DataCollator
    from vistune.data_prep.batching.packing import PackedCollator, segment_lengths
    from vistune.model.segment_attention import SEGMENT_ATTENTION

    model, processor, samples = _model_and_samples(tiny_parts, mixed_data, SEGMENT_ATTENTION)
    assert len({len(s["input_ids"]) for s in samples}) > 2, "the mix must hold samples of different lengths"
    pad = processor.tokenizer.pad_token_id
    padded = DataCollator(pad)(samples)
    packed = PackedCollator(pad)(samples)
    assert packed["input_ids"].shape == (1, sum(len(s["input_ids"]) for s in samples))
    lengths = segment_lengths(packed["position_ids"])
    assert lengths == [len(s["input_ids"]) for s in samples]

    ids = padded.pop("ids"), packed.pop("ids")
    assert ids[0] == ids[1]
    ref = _per_sample_losses(model(**{k: v for k, v in padded.items() if k != "labels"}).logits, padded["labels"])
    got = _packed_losses(model(**{k: v for k, v in packed.items() if k != "labels"}).logits, packed["labels"], lengths)
    assert max(abs(a - b) for a, b in zip(ref, got)) < 1e-5, (ref, got)

    # the batch loss (mean over every supervised token) is the same too
    assert abs(float(model(**padded).loss) - float(model(**packed).loss)) < 1e-5


@torch.no_grad()
def test_sdpa_block_mask_path_equals_segment_path(tiny_parts, mixed_data):
    """transformers' own block-diagonal mask (sdpa, attention_mask=None + position_ids) agrees with the segments."""
    from vistune.data_prep.batching.packing import PackedCollator
    from vistune.model.segment_attention import SEGMENT_ATTENTION

    seg_model, processor, samples = _model_and_samples(tiny_parts, mixed_data, SEGMENT_ATTENTION)
    sdpa_model, _, _ = _model_and_samples(tiny_parts, mixed_data, "sdpa")
    sdpa_model.load_state_dict(seg_model.state_dict())
    packed = PackedCollator(processor.tokenizer.pad_token_id)(samples)
    packed.pop("ids")
    packed.pop("labels")
    # transformers only derives the block mask without a KV cache: training runs with use_cache=False
    a, b = seg_model(**packed, use_cache=False).logits, sdpa_model(**packed, use_cache=False).logits
    assert torch.allclose(a, b, atol=1e-5)


@torch.no_grad()
def test_no_attention_across_samples(tiny_parts, mixed_data):
    """Changing the first sample's tokens leaves the second sample's logits untouched."""
    from vistune.data_prep.batching.packing import PackedCollator
    from vistune.model.segment_attention import SEGMENT_ATTENTION

    model, processor, samples = _model_and_samples(tiny_parts, mixed_data, SEGMENT_ATTENTION)
    collate = PackedCollator(processor.tokenizer.pad_token_id)
    first, second = samples[0], samples[1]
    changed = dict(first, input_ids=first["input_ids"].clone())
    text = first["input_ids"] != model.config.image_token_id
    changed["input_ids"][text.nonzero()[-3:]] = 5
    n = len(first["input_ids"])
    out = []
    for batch in (collate([first, second]), collate([changed, second])):
        batch.pop("ids")
        batch.pop("labels")
        out.append(model(**batch).logits[0, n:])
    assert torch.allclose(out[0], out[1], atol=1e-6)


def test_packed_labels_ignore_each_sample_start():
    from vistune.data_prep.batching.packing import PackedCollator

    samples = [{"id": str(i), "input_ids": torch.arange(1, n + 1), "labels": torch.arange(1, n + 1),
                "pixel_values": torch.zeros(0, 3, 4, 4)} for i, n in enumerate((3, 5))]
    batch = PackedCollator(0)(samples)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 2, 3, IGNORE_INDEX, 2, 3, 4, 5]]
    assert "attention_mask" not in batch and "pixel_values" not in batch


@torch.no_grad()
def test_chunked_cross_entropy_equals_model_loss(tiny_parts, mixed_data):
    """Logits kept only at supervised positions give the model's own loss (padded and packed batches)."""
    from vistune.data_prep import DataCollator
    from vistune.data_prep.batching.packing import PackedCollator
    from vistune.model.segment_attention import SEGMENT_ATTENTION
    from vistune.train.loop.losses import SupervisedLogitsCollator, supervised_cross_entropy

    model, processor, samples = _model_and_samples(tiny_parts, mixed_data, SEGMENT_ATTENTION)
    pad = processor.tokenizer.pad_token_id
    for inner in (DataCollator(pad), PackedCollator(pad)):
        batch = SupervisedLogitsCollator(inner)(samples)
        batch.pop("ids")
        labels = batch.pop("labels")
        full = {k: v for k, v in batch.items() if k != "logits_to_keep"}
        expected = float(model(**full, labels=labels).loss)
        kept = model(**batch)
        assert kept.logits.shape[1] == batch["logits_to_keep"].numel() < labels.shape[1]
        assert abs(float(supervised_cross_entropy(kept, labels)) - expected) < 1e-5
