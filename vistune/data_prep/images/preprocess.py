"""`vistune data preprocess-images`: every image of a records file, already padded to square and resized for the
vision tower, written once under a new image root, so training stops decoding multi-megapixel JPEGs every epoch.

Each image keeps its relative path (the records file is unchanged: point `data.image_root` at the output) but is
stored losslessly (PNG data; PIL reads by content, not by name). Training on the output gives the same pixel values:
the transform's pad-to-square is then a no-op and its resize is to the size the image already has.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vistune.data_prep.images.load import ImageTransform, expand_to_square, load_image
from vistune.data_prep.records import RecordError
from vistune.data_prep.records.readers import load_records
from vistune.data_prep.records.skips import SkipLog


@dataclass
class PreprocessReport:
    written: int = 0  # images written
    existing: int = 0  # already present in the output (skipped)
    failed: list[str] = field(default_factory=list)  # "path: reason" of images that could not be used
    size: tuple[int, int] = (0, 0)  # (height, width) written

    def format(self) -> str:
        lines = [f"images written {self.written}, already there {self.existing}, failed {len(self.failed)}; "
                 f"size {self.size[1]}x{self.size[0]}"]
        lines += [f"  {f}" for f in self.failed[:20]]
        return "\n".join(lines)


def image_processor_for(vision: str):
    """The vision tower's image processor (no weights loaded): a preset name, a local directory or a hub id."""
    from transformers import AutoImageProcessor

    from vistune.model.presets import resolve_vision

    return AutoImageProcessor.from_pretrained(resolve_vision(vision))


def prepare_image(img: Image.Image, transform: ImageTransform) -> Image.Image:
    """What ImageTransform does before the processor: pad to square (mean colour) and / or resize."""
    if transform.aspect == "pad":
        img = expand_to_square(img, transform.mean_colour)
    height, width = transform.size
    return img.resize((width, height), Image.Resampling.BICUBIC)


def preprocess_images(data: str, out_root: str | Path, vision: str, image_root: str | None = None,
                      aspect: str = "pad", workers: int = 4, fmt: str = "auto") -> PreprocessReport:
    """Writes every image referenced by `data` (under `image_root`) to `out_root`, ready for the tower."""
    if aspect not in ("pad", "resize"):
        raise ValueError(f"aspect {aspect!r}: only pad and resize can be precomputed (crop is the processor's own)")
    transform = ImageTransform(image_processor_for(vision), aspect)
    records = load_records(data, fmt=fmt, skips=SkipLog())
    default_root = Path(image_root) if image_root else Path(data).parent
    jobs = sorted({(str(Path(r.image_root) if r.image_root else default_root), p) for r in records for p in r.images})
    out_root = Path(out_root)
    report = PreprocessReport(size=transform.size)

    def one(job: tuple[str, str]) -> str:
        root, rel = job
        target = out_root / rel
        if target.is_file():
            return "existing"
        try:
            img = prepare_image(load_image(rel, root), transform)
        except RecordError as err:
            return f"failed {rel}: {err}"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        img.save(tmp, format="PNG", compress_level=1)
        tmp.replace(target)
        return "written"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for outcome in pool.map(one, jobs):
            if outcome == "written":
                report.written += 1
            elif outcome == "existing":
                report.existing += 1
            else:
                report.failed.append(outcome.removeprefix("failed "))
    return report
