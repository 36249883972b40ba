"""`vistune data preprocess-images`: pre-resized images give exactly the pixel values of the originals."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image


def _write_source(root):
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (300, 520, 3), dtype=np.uint8)).save(root / "img" / "wide.jpg", quality=90)
    Image.fromarray(rng.integers(0, 255, (410, 200, 3), dtype=np.uint8)).save(root / "img" / "tall.png")
    records = [{"id": str(i), "image": name, "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                               {"from": "gpt", "value": "red"}]}
               for i, name in enumerate(["img/wide.jpg", "img/tall.png", "img/missing.jpg"])]
    (root / "data.json").write_text(json.dumps(records))
    return root / "data.json"


def test_preprocessed_images_give_identical_pixel_values(tmp_path, tiny_parts):
    from vistune.data_prep import ImageTransform, load_image
    from vistune.data_prep.images.preprocess import image_processor_for, preprocess_images

    vision = str(tiny_parts[0])
    data = _write_source(tmp_path / "src")
    report = preprocess_images(str(data), tmp_path / "out", vision, workers=2)
    assert report.written == 2 and len(report.failed) == 1 and "missing.jpg" in report.failed[0]
    transform = ImageTransform(image_processor_for(vision), "pad")
    for name in ("img/wide.jpg", "img/tall.png"):
        small = load_image(name, tmp_path / "out")
        assert small.size == transform.size[::-1]
        assert torch.equal(transform(load_image(name, tmp_path / "src")), transform(small))
    again = preprocess_images(str(data), tmp_path / "out", vision)
    assert again.written == 0 and again.existing == 2


def test_cli_preprocess_images(tmp_path, tiny_parts, capsys):
    from vistune.cli import main

    data = _write_source(tmp_path / "src")
    rc = main(["data", "preprocess-images", str(data), str(tmp_path / "out"), "--vision", str(tiny_parts[0])])
    assert rc == 1  # one image is missing: reported, and the exit code says so
    assert "images written 2" in capsys.readouterr().out
