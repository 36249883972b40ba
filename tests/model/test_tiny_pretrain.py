"""The tiny CLIP's pretraining keeps each patch's place in its features, as real towers do (LLaVA reads "where" there)."""

from __future__ import annotations

import random

import torch
from transformers import CLIPVisionModel

from vistune.data_prep.synth.shapes import draw_scene, random_scene
from vistune.model.tiny import TinySpec
from vistune.model.tiny.pretrain import PretrainSettings, pretrain_tiny_clip


def _patch_place_readable(vision_dir, images) -> float:
    """Share of background patches whose own feature (layer -2) names their place, by nearest centroid."""
    from transformers import CLIPImageProcessorPil

    model = CLIPVisionModel.from_pretrained(vision_dir).eval()
    pixels = CLIPImageProcessorPil.from_pretrained(vision_dir)(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        feats = model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    half = len(images) // 2
    centroids = feats[:half].mean(0)  # (places, width)
    nearest = torch.cdist(feats[half:], centroids.expand(len(images) - half, -1, -1)).argmin(-1)
    return (nearest == torch.arange(feats.shape[1])).float().mean().item()


def test_pretrained_tiny_clip_features_say_where_each_patch_is(tmp_path):
    rng = random.Random(0)
    scenes = [random_scene(rng) for _ in range(64)]
    images = [draw_scene(s, 64, rng) for s in scenes]
    captions = [s.caption() for s in scenes]
    spec = TinySpec(image_size=48, patch_size=16)
    readable = {}
    for std in (0.02, 1.0):
        out = tmp_path / f"std{std}"
        pretrain_tiny_clip(images, captions, out, spec=spec, settings=PretrainSettings(steps=5, position_std=std))
        readable[std] = _patch_place_readable(out, images)
    assert readable[1.0] > 0.9 and readable[0.02] < readable[1.0]
