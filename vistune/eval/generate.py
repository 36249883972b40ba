"""Batched generation from a trained LLaVA: prompts rendered by the training template, images by its transform.

Prompts are left-padded so every row's answer starts at the same column; generation stops at the
template's end-of-turn token (and the answer is cut at its end-of-turn text), greedy (no repetition penalty, whatever
the model's generation config says) unless a temperature is given. One image per question, placed as in training
(front of the first user turn).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from vistune import IMAGE_TOKEN
from vistune.eval.items import EvalItem


@dataclass
class GenerationSettings:
    max_new_tokens: int = 16  # answer length limit (benchmarks want a word or a letter)
    temperature: float = 0.0  # 0 = greedy decoding; > 0 samples
    top_p: float = 1.0  # nucleus sampling (only when sampling)
    batch_size: int = 8  # questions per generate() call
    seed: int = 0  # sampling seed


class Generator:
    """Answers `EvalItem`s (or chat turns) with a LlavaForConditionalGeneration + its processor."""

    def __init__(self, model, processor, template: str = "auto", *, image_root: str | Path = ".",
                 aspect: str = "pad", settings: GenerationSettings | None = None):
        from vistune.data_prep import get_template
        from vistune.data_prep.images.inputs import image_transform

        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.template = get_template(template)
        self.transform = image_transform(processor, aspect)  # AnyRes: crops, and tokens by image size
        self.image_root = Path(image_root)
        self.settings = settings or GenerationSettings()
        config = _llava_config(model)  # LLaVA-1.5: a fixed count per image; AnyRes (0 here): by each image's size
        self.num_image_tokens = int(config.image_seq_length) if config.model_type == "llava" else 0
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.end_of_turn = _end_of_turn_text(self.template, self.tokenizer)
        self.stop_ids = self._stop_ids()

    # -- prompts ----------------------------------------------------------------------------------------
    def render(self, messages: Sequence[tuple[str, str]], num_images: int, system: str | None = None) -> str:
        """The generation prompt for (role, text) turns ending with a user turn."""
        from vistune.data_prep import Record, Turn

        record = Record(id="prompt", images=["image"] * num_images, turns=[Turn(r, t) for r, t in messages],
                        system=system)
        return self.template.prompt(record, self.tokenizer)

    def encode(self, prompt: str, images: Sequence[Image.Image] = ()) -> list[int]:
        """Token ids as training builds them (data_prep's own encoding: BOS rule, image-token expansion, each image
        as many tokens as its size takes under AnyRes)."""
        from vistune.data_prep.text.tokenize import encode_prompt

        if self.num_image_tokens:  # LLaVA-1.5: one count for every image
            return encode_prompt(prompt, self.tokenizer, self.num_image_tokens)
        return encode_prompt(prompt, self.tokenizer, self.transform.token_counts([(i.height, i.width) for i in images]))

    def image(self, item: EvalItem) -> Image.Image | None:
        from vistune.data_prep import load_image
        from vistune.data_prep.images.load import to_rgb

        if item.image_b64:
            return to_rgb(Image.open(io.BytesIO(base64.b64decode(item.image_b64))))
        return load_image(item.image, self.image_root) if item.image else None

    # -- generation -------------------------------------------------------------------------------------
    def answer(self, items: Sequence[EvalItem]) -> list[str]:
        """One answer per item, in order (single-turn, the benchmark prompt as the user turn)."""
        prompts, images = [], []
        for item in items:
            img = self.image(item)
            prompts.append(self.render([("user", item.prompt)], 1 if img is not None else 0))
            images.append(img)
        return self.generate(prompts, images)

    def generate(self, prompts: Sequence[str], images: Sequence[Image.Image | None]) -> list[str]:
        out: list[str] = []
        step = max(1, self.settings.batch_size)
        for start in range(0, len(prompts), step):
            out += self._generate_batch(prompts[start:start + step], images[start:start + step])
        return out

    @torch.no_grad()
    def _generate_batch(self, prompts: Sequence[str], images: Sequence[Image.Image | None]) -> list[str]:
        from vistune.data_prep.images.inputs import collate_images
        from vistune.model.generation import decoding_settings

        per_row = [[img] if img is not None else [] for img in images]
        rows = [self.encode(p, imgs) for p, imgs in zip(prompts, per_row, strict=True)]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding
            input_ids[i, width - len(row):] = torch.tensor(row)
            attention[i, width - len(row):] = 1
        device = next(self.model.parameters()).device
        inputs = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}
        image_inputs = collate_images([self.transform.encode(imgs) for imgs in per_row if imgs])
        if image_inputs:
            image_inputs["pixel_values"] = image_inputs["pixel_values"].to(dtype=self.model.dtype)
            inputs.update({k: v.to(device) for k, v in image_inputs.items()})
        s = self.settings
        if s.temperature > 0:
            torch.manual_seed(s.seed)
        generated = self.model.generate(  # as asked, never the base's own sampling / repetition penalty
            **inputs,
            max_new_tokens=s.max_new_tokens,
            **decoding_settings(s.temperature, s.top_p),
            eos_token_id=self.stop_ids,
            pad_token_id=pad,
        )
        new = generated[:, width:]
        return [self._clean(self.tokenizer.decode(row, skip_special_tokens=True)) for row in new]

    def _clean(self, text: str) -> str:
        if self.end_of_turn and self.end_of_turn in text:
            text = text[: text.index(self.end_of_turn)]
        return text.strip()

    def _stop_ids(self) -> list[int]:
        ids = []
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        if self.end_of_turn:
            tok = self.tokenizer.convert_tokens_to_ids(self.end_of_turn)
            if tok is not None and tok != self.tokenizer.unk_token_id and tok not in ids:
                ids.append(int(tok))
        if not ids:
            raise ValueError("the tokenizer has no eos token and the template no end-of-turn token")
        return ids


def _end_of_turn_text(template, tokenizer) -> str:
    """The text that ends a reply in this template ("</s>", "<|eot_id|>", "<|im_end|>", "\\n" for plain)."""
    piece = getattr(template, "end_of_turn", None)
    if piece is None:
        return ""
    eos = getattr(tokenizer, "eos_token", None) or ""
    return piece.replace("{eos}", eos).replace("{bos}", getattr(tokenizer, "bos_token", None) or "")


def _llava_config(model):
    config = model.config
    if not hasattr(config, "vision_config") and hasattr(model, "get_base_model"):
        config = model.get_base_model().config
    return config
