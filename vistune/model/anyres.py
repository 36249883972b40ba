"""Any-resolution LLaVA (LLaVA-NeXT "AnyRes", LLaVA-OneVision "anyres_max_N"): classes, pinpoints, token counts.

`model.arch` picks transformers' own class; this module holds what differs between the three: the config and
model classes, the published crop grids (`image_grid_pinpoints`), the learned `image_newline` row separator and
the processor. The number of image tokens per image is read from transformers' processors, never re-derived.
"""

from __future__ import annotations

import math

import torch

ARCHS = ("llava", "llava_next", "llava_onevision")
_CLASSES = {  # arch -> (config, model, projector module, processor, image processor (PIL backend))
    "llava": ("LlavaConfig", "LlavaForConditionalGeneration", "llava.modeling_llava.LlavaMultiModalProjector",
              "LlavaProcessor", None),
    "llava_next": ("LlavaNextConfig", "LlavaNextForConditionalGeneration",
                   "llava_next.modeling_llava_next.LlavaNextMultiModalProjector", "LlavaNextProcessor",
                   "LlavaNextImageProcessorPil"),
    "llava_onevision": ("LlavaOnevisionConfig", "LlavaOnevisionForConditionalGeneration",
                        "llava_onevision.modeling_llava_onevision.LlavaOnevisionMultiModalProjector",
                        "LlavaOnevisionProcessor", "LlavaOnevisionImageProcessorPil"),
}


class PinpointError(ValueError):
    """An `image_grid_pinpoints` entry the vision tower cannot tile (not a multiple of its input size)."""


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ValueError(f"model.arch {arch!r} is not one of {', '.join(ARCHS)}")
    return arch


def _transformers_attr(dotted: str):
    import importlib

    import transformers

    if "." not in dotted:
        return getattr(transformers, dotted)
    module, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(f"transformers.models.{module}"), name)


def config_class(arch: str):
    return _transformers_attr(_CLASSES[check_arch(arch)][0])


def model_class(arch: str):
    return _transformers_attr(_CLASSES[check_arch(arch)][1])


def projector_class(arch: str):
    return _transformers_attr(_CLASSES[check_arch(arch)][2])


def model_classes() -> tuple[type, ...]:
    """Every LLaVA class vistune composes (for finding the model inside PEFT / DeepSpeed wrappers)."""
    return tuple(model_class(arch) for arch in ARCHS)


def arch_of(model_or_config) -> str:
    """'llava' / 'llava_next' / 'llava_onevision' from a model or its config."""
    config = getattr(model_or_config, "config", model_or_config)
    return check_arch(config.model_type)


def default_pinpoints(arch: str, tower_size: int) -> list[list[int]] | None:
    """The published grids, scaled to the tower: LLaVA-NeXT's five (1x2, 2x1, 2x2, 3x1, 1x3 crops) and
    OneVision's 6 x 6 (1..6 crops a side, pooled down to anyres_max_9)."""
    s = tower_size
    if arch == "llava_next":
        return [[s, 2 * s], [2 * s, s], [2 * s, 2 * s], [3 * s, s], [s, 3 * s]]
    if arch == "llava_onevision":
        return [[i * s, j * s] for i in range(1, 7) for j in range(1, 7)]
    return None


def check_pinpoints(pinpoints: list[list[int]], tower_size: int) -> list[list[int]]:
    """Raises PinpointError unless every pinpoint is (height, width), both positive multiples of the tower size."""
    if not pinpoints:
        raise PinpointError("model.image_grid_pinpoints is empty: give (height, width) pairs such as "
                            f"[[{tower_size}, {2 * tower_size}], [{2 * tower_size}, {tower_size}]]")
    out = []
    for point in pinpoints:
        if len(point) != 2 or any(int(v) <= 0 or int(v) % tower_size for v in point):
            raise PinpointError(f"model.image_grid_pinpoints: {list(point)} is not a (height, width) pair of positive "
                                f"multiples of the vision tower's input size {tower_size}; each crop of the grid must "
                                f"be one {tower_size} x {tower_size} tower input")
        out.append([int(point[0]), int(point[1])])
    return out


def check_aspect_ratio(value: str) -> str:
    """'anyres_max_N' (OneVision: grids beyond N crops are pooled down to about N)."""
    if not value.startswith("anyres_max_") or not value.removeprefix("anyres_max_").isdigit():
        raise ValueError(f"model.vision_aspect_ratio {value!r}: use anyres_max_N (OneVision: anyres_max_9)")
    return value


def new_image_newline(hidden_size: int, dtype: torch.dtype, device) -> torch.nn.Parameter:
    """The learned row separator, initialised as LLaVA-NeXT's llava_arch.py does: N(0, 1/hidden_size)."""
    std = 1 / math.sqrt(hidden_size)
    return torch.nn.Parameter(torch.randn(hidden_size, dtype=dtype, device=device) * std)


def anyres_image_processor(arch: str, tower_processor, tower_size: int, pinpoints: list[list[int]]):
    """The arch's own image processor, carrying the tower's normalisation and input size."""
    cls = _transformers_attr(_CLASSES[arch][4])
    return cls(
        size={"height": tower_size, "width": tower_size},
        crop_size={"height": tower_size, "width": tower_size},  # the crop side the grid is cut into
        do_center_crop=False,
        image_mean=list(tower_processor.image_mean),
        image_std=list(tower_processor.image_std),
        rescale_factor=float(getattr(tower_processor, "rescale_factor", 1 / 255)),
        resample=getattr(tower_processor, "resample", 3),
        image_grid_pinpoints=pinpoints,
        do_pad=True,
    )


def build_processor(arch: str, tower_processor, tokenizer, *, patch_size: int, tower_size: int, drop_cls: bool,
                    pinpoints: list[list[int]] | None, vision_aspect_ratio: str, image_token: str,
                    chat_template: str | None):
    """transformers' processor for `arch`: LlavaProcessor, LlavaNextProcessor or LlavaOnevisionProcessor."""
    cls = _transformers_attr(_CLASSES[check_arch(arch)][3])
    strategy = "default" if drop_cls else "full"
    common = {"tokenizer": tokenizer, "image_token": image_token, "chat_template": chat_template,
              "vision_feature_select_strategy": strategy}
    if arch == "llava":
        return cls(image_processor=tower_processor, patch_size=patch_size,
                   num_additional_image_tokens=1 if drop_cls else 0, **common)
    image_processor = anyres_image_processor(arch, tower_processor, tower_size, pinpoints)
    if arch == "llava_next":
        return cls(image_processor=image_processor, patch_size=patch_size,
                   num_additional_image_tokens=1 if drop_cls else 0, **common)
    per_crop = (tower_size // patch_size) ** 2 + (1 if drop_cls else 0)  # OneVision counts the CLS, then drops it
    return cls(image_processor=image_processor, video_processor=_onevision_video_processor(image_processor),
               num_image_tokens=per_crop, vision_aspect_ratio=vision_aspect_ratio, **common)


def _onevision_video_processor(image_processor):
    """LlavaOnevisionProcessor requires a video processor, and transformers builds those on torchvision only."""
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # absent, or a wheel that does not match torch
        raise RuntimeError("model.arch llava_onevision needs torchvision: transformers' LlavaOnevisionProcessor holds "
                           "a video processor, which transformers builds on torchvision (install the torchvision "
                           "build that matches your torch)") from err
    from transformers import LlavaOnevisionVideoProcessor

    return LlavaOnevisionVideoProcessor(size=dict(image_processor.size), image_mean=image_processor.image_mean,
                                        image_std=image_processor.image_std)


def is_anyres(processor) -> bool:
    return getattr(getattr(processor, "image_processor", None), "image_grid_pinpoints", None) is not None


def image_token_counts(processor, image_sizes: list[tuple[int, int]]) -> list[int]:
    """Image tokens each image of ONE sample takes, from transformers' processor for (height, width) sizes.

    LLaVA: the fixed count. LLaVA-NeXT / OneVision single image: the processor's own count (grid, unpadding,
    row newlines, OneVision's pooling). OneVision multi-image: one base crop + newline each, as its processor does.
    """
    if not image_sizes:
        return []
    if not is_anyres(processor):
        return [_fixed_count(processor)] * len(image_sizes)
    if type(processor).__name__ == "LlavaOnevisionProcessor" and len(image_sizes) > 1:
        n = processor.num_image_tokens + 1 - (processor.vision_feature_select_strategy == "default")
        return [n] * len(image_sizes)
    counts = processor._get_num_multimodal_tokens(image_sizes=[list(s) for s in image_sizes])
    return [int(c) for c in counts["num_image_tokens"]]


def _fixed_count(processor) -> int:
    """LlavaProcessor's tokens per image: (side / patch)^2 patches (+ CLS, less the dropped CLS)."""
    size = dict(processor.image_processor.crop_size if getattr(processor.image_processor, "do_center_crop", False)
                else processor.image_processor.size)
    side = int(size.get("height") or size.get("shortest_edge"))
    n = (side // processor.patch_size) ** 2 + processor.num_additional_image_tokens
    return n - (processor.vision_feature_select_strategy == "default")


def crop_side(image_processor) -> int:
    """The side of the square crops an AnyRes image processor cuts: its crop_size, else its size (llava-hf's
    LLaVA-NeXT processors keep CLIP's `size: {shortest_edge: 336}` beside `crop_size` 336 x 336)."""
    crop = dict(getattr(image_processor, "crop_size", None) or {})
    if crop.get("height"):
        return int(crop["height"])
    size = dict(image_processor.size)
    return int(size.get("height") or size["shortest_edge"])


def crop_layout(processor, image_size: tuple[int, int]) -> tuple[int, int]:
    """(rows, columns) of tower crops an image of (height, width) is cut into (besides the base crop)."""
    from transformers.image_processing_utils import select_best_resolution

    side = crop_side(processor.image_processor)
    height, width = select_best_resolution(list(image_size), processor.image_processor.image_grid_pinpoints)
    return height // side, width // side


TYPICAL_IMAGE = (480, 640)  # (height, width) the planner assumes: COCO's most common size


def count_tokens(arch: str, *, tower_size: int, patch_size: int, drop_cls: bool,
                 pinpoints: list[list[int]] | None = None, vision_aspect_ratio: str = "anyres_max_9",
                 image_size: tuple[int, int] = TYPICAL_IMAGE) -> tuple[int, int]:
    """(image tokens, tower inputs) for one image of `image_size` without any checkpoint: transformers' processor
    for `arch` around a stand-in tokenizer (what the planner needs before anything is downloaded)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import CLIPImageProcessorPil, PreTrainedTokenizerFast

    from vistune import IMAGE_TOKEN

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({IMAGE_TOKEN: 0, "<unk>": 1}, unk_token="<unk>")), unk_token="<unk>")
    points = check_pinpoints(pinpoints or default_pinpoints(arch, tower_size), tower_size) if arch != "llava" else None
    if arch == "llava_onevision" and not has_torchvision():
        counter = _OnevisionTokenCounter(anyres_image_processor(arch, CLIPImageProcessorPil(), tower_size, points),
                                         (tower_size // patch_size) ** 2 + drop_cls, vision_aspect_ratio, drop_cls)
        rows, cols = crop_layout(counter, image_size)
        return counter.count(*image_size), 1 + rows * cols
    processor = build_processor(arch, CLIPImageProcessorPil(size={"height": tower_size, "width": tower_size},
                                                            crop_size={"height": tower_size, "width": tower_size}),
                                tokenizer, patch_size=patch_size, tower_size=tower_size, drop_cls=drop_cls,
                                pinpoints=points, vision_aspect_ratio=vision_aspect_ratio, image_token=IMAGE_TOKEN,
                                chat_template=None)
    (tokens,) = image_token_counts(processor, [image_size])
    if arch == "llava":
        return tokens, 1
    rows, cols = crop_layout(processor, image_size)
    return tokens, 1 + rows * cols


def has_torchvision() -> bool:
    """Whether a torchvision that works with this torch is importable (OneVision's processor needs one)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or a wheel that does not match torch
        return False
    return True


def _onevision_counter_class():
    from transformers import LlavaOnevisionProcessor

    class OnevisionTokenCounter(LlavaOnevisionProcessor):
        """LlavaOnevisionProcessor's own token arithmetic without its video half (which transformers builds on
        torchvision only): used by the planner where torchvision is absent."""

        def __init__(self, image_processor, num_image_tokens: int, vision_aspect_ratio: str, drop_cls: bool):
            # ProcessorMixin.__init__ is skipped on purpose: it insists on a torchvision video processor
            self.image_processor = image_processor
            self.num_image_tokens = num_image_tokens
            self.vision_aspect_ratio = vision_aspect_ratio
            self.vision_feature_select_strategy = "default" if drop_cls else "full"

        def count(self, height: int, width: int) -> int:
            side = crop_side(self.image_processor)
            return self._get_number_of_features(height, width, side, side) - (
                self.vision_feature_select_strategy == "default")

    return OnevisionTokenCounter


def _OnevisionTokenCounter(*args):  # noqa: N802 - a class built on first use (transformers imported lazily)
    return _onevision_counter_class()(*args)
