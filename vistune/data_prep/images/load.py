"""Loading images safely and turning them into pixel values the way LLaVA-1.5 does.

`load_image` never reads outside the image root (no `..`, absolute paths or symlinks that leave it),
applies EXIF orientation and converts every mode (CMYK, 16-bit, palette, animated) to RGB; its errors
name the file. `ImageTransform` implements the aspect modes: `pad` (LLaVA-1.5), `resize` and `crop`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps

from vistune.data_prep.records import RecordError

ASPECTS = ("pad", "resize", "crop")


def resolve_image_path(path: str, image_root: str | Path) -> Path:
    """The real path of `path` under `image_root`; RecordError if it escapes the root or does not exist."""
    root = Path(image_root).resolve()
    if os.path.isabs(path):
        raise RecordError("image_escapes_root", f"image {path!r} is an absolute path (must be relative to {root})")
    candidate = root / path
    try:
        real = candidate.resolve()
        if not real.is_relative_to(root):
            raise RecordError("image_escapes_root", f"image {path!r} resolves to {real}, outside the image root {root}")
        if not real.is_file():
            raise RecordError("missing_image", f"image {candidate} does not exist")
    except (OSError, ValueError, RuntimeError) as err:  # NUL byte, name too long, symlink loop (3.11: RuntimeError)
        if isinstance(err, RecordError):
            raise
        raise RecordError("missing_image", f"image {path!r} cannot be reached under {root}: {err}") from err
    return real


def load_image(path: str, image_root: str | Path) -> Image.Image:
    """An RGB PIL image, EXIF-transposed; RecordError naming the file when it cannot be used."""
    real = resolve_image_path(path, image_root)
    if real.stat().st_size == 0:
        raise RecordError("empty_image", f"image {real} is zero bytes")
    return decode_image(real, str(real))


def decode_image(source, name: str) -> Image.Image:
    """`load_image` for an open file or a path already checked (e.g. an image member of a tar shard)."""
    real = name
    try:
        with Image.open(source) as img:
            img.seek(0)  # animated: the first frame
            img = ImageOps.exif_transpose(img)
            img.load()
            return to_rgb(img)
    except Image.DecompressionBombError as err:
        raise RecordError("image_too_large", f"image {real}: {err}") from err
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        raise RecordError("corrupt_image", f"image {real} cannot be decoded: {type(err).__name__}: {err}") from err


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any PIL mode; transparency is composited on white, 16-bit / float are rescaled to 8 bits."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").split()[-1])
        return background
    return img.convert("RGB")


def expand_to_square(img: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """LLaVA-1.5's expand2square: the image centred on a square canvas of `fill` colour."""
    width, height = img.size
    if width == height:
        return img
    side = max(width, height)
    canvas = Image.new(img.mode, (side, side), fill)
    canvas.paste(img, ((side - width) // 2, (side - height) // 2))
    return canvas


@dataclass
class ImageTransform:
    """PIL image -> pixel_values [3, H, W] through the vision tower's own image processor."""

    image_processor: object  # e.g. CLIPImageProcessorPil / SiglipImageProcessorPil
    aspect: str = "pad"  # "pad" (LLaVA-1.5), "resize" (squash to H x W) or "crop" (resize + centre crop)

    def __post_init__(self) -> None:
        if self.aspect not in ASPECTS:
            raise ValueError(f"unknown aspect mode {self.aspect!r}: use one of {', '.join(ASPECTS)}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the pixel values the processor produces."""
        p = self.image_processor
        size = p.crop_size if getattr(p, "do_center_crop", False) and p.crop_size else p.size
        size = dict(size)
        if "height" in size:
            return int(size["height"]), int(size["width"])
        side = int(size.get("shortest_edge") or size.get("longest_edge"))
        return side, side

    @property
    def mean_colour(self) -> tuple[int, int, int]:
        return tuple(int(x * 255) for x in self.image_processor.image_mean)

    def geometry(self, img: Image.Image) -> Image.Image:
        """The aspect step alone: an image the image processor's own resize and crop leave as it is (pad, resize),
        or the image itself (crop: the processor's resize + centre crop). Engines that run the processor themselves
        (vLLM) get this image and so see the pixels `__call__` gives."""
        if self.aspect == "pad":
            img = expand_to_square(img, self.mean_colour)
        if self.aspect in ("pad", "resize"):
            height, width = self.size
            img = img.resize((width, height), Image.Resampling.BICUBIC)
        return img

    def __call__(self, img: Image.Image) -> torch.Tensor:
        out = self.image_processor(images=self.geometry(img), return_tensors="pt")["pixel_values"]
        return torch.as_tensor(out[0], dtype=torch.float32)
