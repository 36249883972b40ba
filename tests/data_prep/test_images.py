"""Images: safe paths, EXIF orientation, every PIL mode to RGB, LLaVA-1.5 pad-to-square, aspect modes."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

from vistune.data_prep import ImageTransform, RecordError, expand_to_square, load_image


def test_expand_to_square_centres_on_the_fill_colour():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    square = expand_to_square(img, (122, 116, 104))
    assert square.size == (40, 40)
    assert square.getpixel((0, 0)) == (122, 116, 104) and square.getpixel((0, 9)) == (122, 116, 104)
    assert square.getpixel((0, 10)) == (255, 0, 0) and square.getpixel((39, 29)) == (255, 0, 0)
    assert square.getpixel((0, 30)) == (122, 116, 104)
    assert expand_to_square(Image.new("RGB", (10, 30)), (0, 0, 0)).size == (30, 30)


def test_pad_mode_uses_the_processors_mean_colour(tiny_processor):
    transform = ImageTransform(tiny_processor.image_processor, "pad")
    assert transform.mean_colour == (122, 116, 104) and transform.size == (32, 32)
    pixels = transform(Image.new("RGB", (64, 32), (255, 0, 0)))
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
    assert pixels[:, 0, 16].abs().max() < 0.02  # padding = mean colour = 0 after normalisation
    assert pixels[0, 16, 16] > 1.5  # the red image in the middle


def test_resize_and_crop_modes(tiny_processor):
    img = Image.new("RGB", (64, 32), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 8, 32))  # a blue stripe on the left edge
    resized = ImageTransform(tiny_processor.image_processor, "resize")(img)
    cropped = ImageTransform(tiny_processor.image_processor, "crop")(img)
    assert resized.shape == cropped.shape == (3, 32, 32)
    assert resized[2, 16, 0] > 1.0  # squashed: the stripe stays at the edge
    assert cropped[2, 16, 0] < 0  # centre crop: the stripe is cut away
    with pytest.raises(ValueError, match="aspect"):
        ImageTransform(tiny_processor.image_processor, "stretch")


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    img.save(tmp_path / "o.jpg", exif=exif)
    assert load_image("o.jpg", tmp_path).size == (20, 40)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "L", "LA", "1"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    Image.new(mode, (8, 8)).save(tmp_path / "m.tiff")
    img = load_image("m.tiff", tmp_path)
    assert img.mode == "RGB" and img.size == (8, 8)


def test_animated_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("P", (8, 8), i) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert load_image("a.gif", tmp_path).mode == "RGB"


def problem_of(path, root):
    with pytest.raises(RecordError) as err:
        load_image(path, root)
    return err.value.problem, str(err.value)


def test_paths_escaping_the_root_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", root / "link.png")
    Image.new("RGB", (4, 4)).save(root / "ok.png")
    os.symlink(root / "ok.png", root / "inside.png")
    assert problem_of("../secret.png", root)[0] == "image_escapes_root"
    assert problem_of(str(tmp_path / "secret.png"), root)[0] == "image_escapes_root"
    assert problem_of("link.png", root)[0] == "image_escapes_root"
    assert load_image("inside.png", root).size == (4, 4)  # a symlink that stays inside is fine


def test_missing_empty_and_corrupt_files_name_the_file(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    for name, problem in (("nope.png", "missing_image"), ("zero.png", "empty_image"), ("junk.png", "corrupt_image"),
                          ("cut.png", "corrupt_image")):
        got, message = problem_of(name, tmp_path)
        assert got == problem and name in message


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 > 2 * 1000 raises the bomb error
    assert problem_of("big.png", tmp_path)[0] == "image_too_large"
