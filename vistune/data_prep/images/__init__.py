"""Images: loaded safely, turned into pixel values and token counts for every arch, or preprocessed once on disk."""

from vistune.data_prep.images.load import (
    ASPECTS,
    ImageTransform,
    expand_to_square,
    load_image,
    resolve_image_path,
)

__all__ = ["ASPECTS", "ImageTransform", "expand_to_square", "load_image", "resolve_image_path"]
