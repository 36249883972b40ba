"""Composition of LLaVA from separately saved parts, and its round trip through plain transformers."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vistune import IMAGE_TOKEN


def _image(seed: int = 0, size=(40, 52)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(*size, 3), dtype=np.uint8))


def _batch(processor, n_images: int = 2):
    texts = [f"{IMAGE_TOKEN}\nwhat colour is the shape? red", f"{IMAGE_TOKEN}\nhow many? two"][:n_images]
    return processor(images=[_image(i) for i in range(n_images)], text=texts, padding=True, return_tensors="pt")


def test_composed_model_is_standard_llava(tiny_llava):
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    model, processor = tiny_llava
    assert type(model) is LlavaForConditionalGeneration
    assert isinstance(processor, LlavaProcessor)
    cfg = model.config
    assert cfg.vision_feature_layer == -2
    assert cfg.vision_feature_select_strategy == "default"  # CLIP: CLS dropped
    assert cfg.projector_hidden_act == "gelu"
    side = cfg.vision_config.image_size // cfg.vision_config.patch_size
    assert cfg.image_seq_length == side * side
    tok = processor.tokenizer
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) == cfg.image_token_index
    assert tok.pad_token is not None
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    proj = model.model.multi_modal_projector
    assert proj.linear_1.in_features == cfg.vision_config.hidden_size
    assert proj.linear_1.out_features == proj.linear_2.out_features == cfg.text_config.hidden_size


def test_new_embedding_rows_start_at_mean(tiny_parts):
    from transformers import AutoModelForCausalLM

    from vistune.model import build_llava

    vision, llm = tiny_parts
    original = AutoModelForCausalLM.from_pretrained(llm).get_input_embeddings().weight
    model, processor = build_llava(str(vision), str(llm))
    emb = model.get_input_embeddings().weight
    old = original.shape[0]
    assert emb.shape[0] == len(processor.tokenizer) > old
    torch.testing.assert_close(emb[:old], original)
    torch.testing.assert_close(emb[old:], original.mean(0, keepdim=True).expand(emb.shape[0] - old, -1))


def test_forward_gives_finite_loss_and_one_feature_per_image_token(tiny_llava):
    model, processor = tiny_llava
    batch = _batch(processor)
    n_tokens = int((batch["input_ids"] == model.config.image_token_index).sum())
    assert n_tokens == 2 * model.config.image_seq_length
    features = model.get_image_features(pixel_values=batch["pixel_values"])
    features = features.pooler_output if hasattr(features, "pooler_output") else features
    n_features = sum(f.shape[0] for f in features) if isinstance(features, (list, tuple)) else features.shape[:-1].numel()
    assert n_features == n_tokens
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)


def test_save_and_reload_with_plain_transformers_gives_identical_logits(tiny_llava, tmp_path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model, processor = tiny_llava
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = LlavaForConditionalGeneration.from_pretrained(tmp_path)
    reprocessor = AutoProcessor.from_pretrained(tmp_path)
    batch = _batch(processor)
    rebatch = _batch(reprocessor)
    assert torch.equal(batch["input_ids"], rebatch["input_ids"])
    torch.testing.assert_close(batch["pixel_values"], rebatch["pixel_values"])
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, reloaded(**rebatch).logits, rtol=0, atol=0)
