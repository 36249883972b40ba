"""`vistune model import-llava`: LLaVA's own formats -> HF Llava, checked against a direct LLaVA forward."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vistune.model.checkpoints.weight_files import read_weights


def _image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 52, 3), dtype=np.uint8))


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vistune.cli", *map(str, args)], capture_output=True, text=True)


def llava_reference_logits(state: dict, config: dict, clip_dir, vicuna_dir, ids: torch.Tensor, pixels, image_id: int):
    """LLaVA's forward written out: CLIP hidden_states[select_layer], drop CLS for `patch`, the projector
    (mlp2x_gelu: Linear-GELU-Linear; linear: Linear), spliced where the image token stood (LLaVA's
    prepare_inputs_labels_for_multimodal), then the Llama LM on the embeddings."""
    from transformers import CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    tower = CLIPVisionModel.from_pretrained(clip_dir, dtype=torch.float32, use_safetensors=False)
    vision = {k.removeprefix("model.vision_tower.vision_tower.").removeprefix("vision_model."): v.float()
              for k, v in state.items()
              if k.startswith("model.vision_tower.")}
    if vision:
        tower.load_state_dict(vision)
    hidden = tower(pixels.float(), output_hidden_states=True).hidden_states[config["mm_vision_select_layer"]]
    if config["mm_vision_select_feature"] == "patch":
        hidden = hidden[:, 1:]
    p = {k.removeprefix("model.mm_projector."): v.float() for k, v in state.items() if "mm_projector" in k}
    if config["mm_projector_type"] == "linear":
        features = hidden @ p["weight"].T + p["bias"]
    else:
        h = torch.nn.functional.gelu(hidden @ p["0.weight"].T + p["0.bias"])
        features = h @ p["2.weight"].T + p["2.bias"]
    lm = LlamaForCausalLM(LlamaConfig.from_pretrained(vicuna_dir))
    lm.load_state_dict({k: v.float() for k, v in state.items() if not k.startswith(("model.mm_", "model.vision_"))})
    lm.eval()
    pos = (ids[0] == image_id).nonzero()[0].item()
    text = ids[0][ids[0] != image_id]
    emb = lm.get_input_embeddings()(text[None])
    embeds = torch.cat([emb[:, :pos], features, emb[:, pos:]], dim=1)
    return lm(inputs_embeds=embeds).logits


def _compare(out, state, config, clip_dir, vicuna_dir):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(out)
    batch = processor(images=[_image()], text=["<image>\nWhat is the colour of the shape?"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        image_id = model.config.image_token_index
        ids = batch["input_ids"]
        first = (ids[0] == image_id).nonzero()[0].item()
        n = int((ids[0] == image_id).sum())
        ids_llava = torch.cat([ids[:, :first + 1], ids[:, first + n:]], dim=1)  # one placeholder, as LLaVA has
        ref = llava_reference_logits(state, config, clip_dir, vicuna_dir, ids_llava, batch["pixel_values"], image_id)
    vocab = config["vocab_size"]
    assert logits.shape[1] == ref.shape[1]
    assert torch.allclose(logits[..., :vocab], ref, atol=1e-5, rtol=0), (logits[..., :vocab] - ref).abs().max()


@pytest.mark.parametrize("projector,with_vision", [("mlp2x_gelu", False), ("mlp2x_gelu", True), ("linear", False)])
def test_full_checkpoint_matches_llava_forward(zoo, tmp_path, projector, with_vision):
    src = zoo.llava_v15(projector, with_vision)
    out = tmp_path / "hf"
    result = _cli("model", "import-llava", src, out, "--vision", zoo.clip(), "--dtype", "float32", "--allow-pickle")
    assert result.returncode == 0, result.stderr
    assert "model.mm_projector" in result.stdout and "multi_modal_projector.linear_1" in result.stdout
    mapping = json.loads((out / "import-llava.json").read_text())["mapping"]
    state = read_weights(src, allow_pickle=True)
    assert set(state) <= {s for s, _ in mapping}  # every source tensor is listed with its place
    _compare(out, state, json.loads((src / "config.json").read_text()), zoo.clip(), zoo.vicuna())


def test_lora_output_dir_matches_merged_llava_forward(zoo, tmp_path):
    src, out = zoo.llava_lora(), tmp_path / "hf"
    result = _cli("model", "import-llava", src, out, "--base", zoo.vicuna(), "--vision", zoo.clip(),
                  "--dtype", "float32", "--allow-pickle")
    assert result.returncode == 0, result.stderr
    # the oracle: LLaVA's builder — base weights, non_lora_trainables, LoRA merged (W + B A alpha / r)
    state = {k: v.float() for k, v in read_weights(zoo.vicuna(), allow_pickle=True).items()}
    adapter = torch.load(src / "adapter_model.bin", weights_only=True)
    cfg = json.loads((src / "adapter_config.json").read_text())
    for name in adapter:
        if ".lora_A." in name:
            module = name.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            b = adapter[name.replace("lora_A", "lora_B")].float()
            state[module + ".weight"] += b @ adapter[name].float() * cfg["lora_alpha"] / cfg["r"]
    extra = torch.load(src / "non_lora_trainables.bin", weights_only=True)
    state.update({k.removeprefix("base_model.model."): v for k, v in extra.items()})
    _compare(out, state, json.loads((src / "config.json").read_text()), zoo.clip(), zoo.vicuna())


def test_projector_bin_becomes_vistune_projector(zoo, tmp_path):
    from safetensors.torch import load_file

    src, out = zoo.projector_bin(), tmp_path / "proj"
    result = _cli("model", "import-llava", src / "mm_projector.bin", out, "--allow-pickle")
    assert result.returncode == 0, result.stderr
    got = load_file(str(out / "projector.safetensors"))
    ref = torch.load(src / "mm_projector.bin", weights_only=True)
    assert torch.equal(got["multi_modal_projector.linear_1.weight"], ref["model.mm_projector.0.weight"].float())
    assert torch.equal(got["multi_modal_projector.linear_2.bias"], ref["model.mm_projector.2.bias"].float())


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()  # (transformers' own load reports may precede it)
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in result.stderr, result.stderr
    return errors[0]


@pytest.mark.slow  # six CLI processes
def test_bad_inputs_are_one_line_errors(zoo, tmp_path):
    import shutil

    # a missing shard
    broken = tmp_path / "missing-shard"
    shutil.copytree(zoo.llava_v15(), broken)
    (broken / "pytorch_model-00002-of-00002.bin").unlink()
    line = _one_error_line(_cli("model", "import-llava", broken, tmp_path / "o1", "--vision", zoo.clip(),
                                "--allow-pickle"))
    assert "pytorch_model-00002-of-00002.bin" in line and "missing" in line
    # an unknown projector type
    odd = tmp_path / "resampler"
    shutil.copytree(zoo.llava_v15(), odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "mm_projector_type": "resampler"}))
    line = _one_error_line(_cli("model", "import-llava", odd, tmp_path / "o2", "--vision", zoo.clip(),
                                "--allow-pickle"))
    assert "mm_projector_type" in line and "resampler" in line
    # a tensor with no place in HF Llava (the command fails on leftovers rather than dropping them)
    extra = tmp_path / "leftover"
    shutil.copytree(zoo.llava_v15(), extra)
    shard = extra / "pytorch_model-00001-of-00002.bin"
    torch.save({**torch.load(shard, weights_only=True), "model.vision_resampler.query": torch.zeros(2)}, shard)
    line = _one_error_line(_cli("model", "import-llava", extra, tmp_path / "o6", "--vision", zoo.clip(),
                                "--allow-pickle"))
    assert "model.vision_resampler.query" in line and "no place" in line
    # LLaVA-NeXT anyres with spatial_unpad: not representable in HF Llava (yet)
    (odd / "config.json").write_text(json.dumps({**config, "mm_patch_merge_type": "spatial_unpad",
                                                 "image_aspect_ratio": "anyres"}))
    line = _one_error_line(_cli("model", "import-llava", odd, tmp_path / "o5", "--vision", zoo.clip(),
                                "--allow-pickle"))
    assert "mm_patch_merge_type" in line and "spatial_unpad" in line
    # a projector of the wrong shape for the config
    wrong = tmp_path / "wrong-shape"
    shutil.copytree(zoo.llava_v15(), wrong)
    index = json.loads((wrong / "pytorch_model.bin.index.json").read_text())["weight_map"]
    shard = index["model.mm_projector.0.weight"]
    state = torch.load(wrong / shard, weights_only=True)
    state["model.mm_projector.0.weight"] = torch.zeros(64, 48, dtype=torch.float16)
    torch.save(state, wrong / shard)
    line = _one_error_line(_cli("model", "import-llava", wrong, tmp_path / "o3", "--vision", zoo.clip(),
                                "--allow-pickle"))
    assert "multi_modal_projector.linear_1.weight" in line and "shape" in line
    # pickle weights without --allow-pickle
    line = _one_error_line(_cli("model", "import-llava", zoo.llava_v15(), tmp_path / "o4", "--vision", zoo.clip()))
    assert "--allow-pickle" in line
