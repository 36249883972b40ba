"""Images as model inputs for every arch: pixel tensors, image sizes, and how many tokens each image takes.

LLaVA-1.5 (`ImageTransform`): one tower-sized image, a fixed token count. LLaVA-NeXT / OneVision
(`AnyresTransform`): transformers' own image processor tiles the image into a grid of crops plus a base image, and
the token count depends on the image's size (read from the file header, so tokenising never decodes an image).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from vistune.data_prep.images.load import ImageTransform, resolve_image_path
from vistune.data_prep.records import RecordError

_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees (exif_transpose swaps width and height)


def image_size(path: str, image_root: str | Path) -> tuple[int, int]:
    """(height, width) of the image as `load_image` will return it, from the header alone."""
    real = resolve_image_path(path, image_root)
    try:
        with Image.open(real) as img:
            width, height = img.size
            if img.getexif().get(0x0112) in _SWAPS_SIDES:
                width, height = height, width
    except Image.DecompressionBombError as err:
        raise RecordError("image_too_large", f"image {real}: {err}") from err
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        raise RecordError("corrupt_image", f"image {real} cannot be read: {type(err).__name__}: {err}") from err
    return height, width


class AnyresTransform:
    """PIL images of one sample -> {"pixel_values" [n, crops, 3, s, s], "image_sizes" [n, 2] (, "batch_num_images")}
    through the processor's own LLaVA-NeXT / OneVision image processor."""

    def __init__(self, processor):
        self.processor = processor
        self.image_processor = processor.image_processor
        self.onevision = type(processor).__name__ == "LlavaOnevisionProcessor"

    @property
    def size(self) -> tuple[int, int]:
        from vistune.model.anyres import crop_side

        side = crop_side(self.image_processor)
        return side, side

    def token_counts(self, sizes: list[tuple[int, int]]) -> list[int]:
        from vistune.model.anyres import image_token_counts

        return image_token_counts(self.processor, sizes)

    def geometry(self, img: Image.Image) -> Image.Image:
        """The image an engine running the same processor (vLLM) should get: the image itself (tiling is the
        processor's)."""
        return img

    def encode(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        nested = [images] if self.onevision else images  # OneVision: a multi-image sample gets base crops only
        out = self.image_processor(images=nested, return_tensors="pt")
        inputs = {"pixel_values": torch.as_tensor(out["pixel_values"], dtype=torch.float32),
                  "image_sizes": torch.as_tensor(out["image_sizes"], dtype=torch.long).reshape(-1, 2)}
        if self.onevision:
            inputs["batch_num_images"] = torch.tensor([len(images)], dtype=torch.long)
            if len(images) > 1:
                inputs["pixel_values"] = inputs["pixel_values"][:, :1]
        return inputs


class FixedTransform(ImageTransform):
    """LLaVA-1.5's transform with the interface `AnyresTransform` has."""

    def __init__(self, processor, aspect: str = "pad"):
        super().__init__(processor.image_processor, aspect)
        self.processor = processor

    def token_counts(self, sizes: list[tuple[int, int]]) -> list[int]:
        from vistune.model.anyres import image_token_counts

        return image_token_counts(self.processor, sizes)

    def encode(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.stack([self(img) for img in images])}


def image_transform(processor, aspect: str = "pad") -> AnyresTransform | FixedTransform:
    """The transform for the processor's arch (`data.aspect` applies to LLaVA-1.5 only; AnyRes tiles instead)."""
    from vistune.model.anyres import is_anyres

    return AnyresTransform(processor) if is_anyres(processor) else FixedTransform(processor, aspect)


def collate_images(samples: list[dict]) -> dict[str, torch.Tensor]:
    """The image keys of a batch: every sample's images in order; AnyRes crops padded to the batch's most."""
    with_images = [s for s in samples if s.get("pixel_values") is not None and len(s["pixel_values"])]
    if not with_images:
        return {}
    pixels = [s["pixel_values"] for s in with_images]
    if pixels[0].dim() == 5:  # [n, crops, 3, H, W]: pad the crop axis, as transformers' processor does
        most = max(p.shape[1] for p in pixels)
        pixels = [torch.nn.functional.pad(p, (0, 0, 0, 0, 0, 0, 0, most - p.shape[1])) for p in pixels]
    batch = {"pixel_values": torch.cat(pixels)}
    for key in ("image_sizes", "batch_num_images"):
        if key in with_images[0]:
            batch[key] = torch.cat([s[key] for s in with_images])
    return batch


def placeholder_image(processor) -> tuple[dict[str, torch.Tensor], int]:
    """(image inputs, tokens) of one black tower-sized image: what a text-only batch runs through the tower so every
    ZeRO-3 rank takes part in the same forward."""
    transform = image_transform(processor)
    height, width = transform.size
    inputs = transform.encode([Image.new("RGB", (width, height))])
    return inputs, transform.token_counts([(height, width)])[0]
