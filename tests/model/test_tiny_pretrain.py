"""The tiny CLIP's per-patch objective: its targets say what each patch shows and where, and it trains."""

from __future__ import annotations

import torch

from vistune.model.tiny_pretrain import PretrainSettings, _PatchAwareCLIP


def _clip(side: int = 4, patch: int = 4):
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=side * patch, patch_size=patch)
    text = CLIPTextConfig(vocab_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, max_position_embeddings=4)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32))


def test_targets_mark_the_object_patch_with_its_place():
    torch.manual_seed(0)
    model = _PatchAwareCLIP(_clip(), feature_layer=-2, weight=1.0)
    pixels = torch.ones(1, 3, 16, 16)  # a white canvas (normalised units) ...
    pixels[:, 0, 12:16, 0:4] = -1.0  # ... with one object filling the bottom-left patch (row 3, column 0)
    t = model.targets(pixels)[0]  # (16 patches, 12 colours + x, y, occupancy)
    occupancy = t[:, 14].view(4, 4)
    assert occupancy[3, 0] > 0 and occupancy.sum() == occupancy[3, 0]  # only that patch is occupied
    x, y = t[12, 12], t[12, 13]
    assert x < 0 < y  # left of centre, below it (image y grows downwards)
    assert torch.equal(t[12, :12], torch.tensor([-1.0] * 4 + [1.0] * 8))  # 4 quarter means per channel: only red off


def test_patch_objective_adds_to_the_clip_loss_and_trains():
    torch.manual_seed(0)
    clip = _clip()
    model = _PatchAwareCLIP(clip, feature_layer=-2, weight=1.0)
    batch = {"input_ids": torch.randint(0, 16, (4, 4)), "pixel_values": torch.randn(4, 3, 16, 16), "return_loss": True}
    total = model(**batch).loss
    plain = clip(**batch).loss
    assert total > plain  # the per-patch term is there
    optimizer = torch.optim.AdamW(model.parameters(), lr=PretrainSettings().lr)
    for _ in range(20):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
    assert model(**batch).loss < total
