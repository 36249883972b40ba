"""Pretrains the tiny CLIP and tiny Llama for the AnyRes detail experiment (scripts/detail_anyres.sh), and checks
with a linear probe what the tower can read in each arm's view before any LLaVA run.

Reuses the quickstart's pretraining (vistune.model.tiny.pretrain). The CLIP sees each training image both ways a
LLaVA model can, each captioned with what that view shows: the tower-sized cell that holds the shape (exactly one
AnyRes crop) as "A small red circle.", and the whole image padded to a square and resized to the tower's side (what
arch llava sees: a blob of 2-3 px) as "A small red shape.". So both arms get one tower tuned to their own view.
(Captioning the padded squares with the kind too makes the two views' captions contradict each other: the CLIP then
stalls at the colour-only loss, ln 16 for a batch of 64, and reads the kind in no view.)
The probe fits a logistic regression on the tower's features (the layer LLaVA reads, mean- and max-pooled over
patches) of 80% of the training images, per view, and scores the rest: the kind must be readable in the crop view
before the LLaVA runs mean anything, and the padded view shows how much of it is left for arch llava.
Usage: python scripts/detail_parts.py DATA_DIR OUT_DIR [CLIP_STEPS] [LLM_STEPS]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vistune.data_prep.images import expand_to_square
from vistune.model.tiny.parts import TinySpec, tiny_image_processor
from vistune.model.tiny.pretrain import PretrainSettings, pretrain_tiny_clip, pretrain_tiny_llm


def views(img: Image.Image, size: int, mean_colour: tuple[int, int, int]) -> dict[str, Image.Image]:
    """The tower-sized cell that holds the (only) shape, as an AnyRes crop shows it, and the padded square (llava)."""
    ink = np.argwhere(np.asarray(img).min(axis=2) < 250)
    cy, cx = ink.mean(axis=0) if len(ink) else (img.height / 2, img.width / 2)
    left, top = int(cx // size) * size, int(cy // size) * size
    crop = img.crop((left, top, left + size, top + size))
    square = expand_to_square(img, mean_colour).resize((size, size), Image.Resampling.BICUBIC)
    return {"crop": crop, "padded": square}


def load_views(data: Path, name: str, size: int, mean_colour) -> tuple[dict[str, list[Image.Image]], list[dict]]:
    """Both views of every image in data/name, and the records."""
    records = json.loads((data / name).read_text())
    out: dict[str, list[Image.Image]] = {"crop": [], "padded": []}
    for r in records:
        for view, img in views(Image.open(data / r["image"]).convert("RGB"), size, mean_colour).items():
            out[view].append(img)
    return out, records


@torch.no_grad()
def tower_features(vision_dir: Path, images: list[Image.Image]) -> torch.Tensor:
    """[n, 2 * hidden]: mean and max over patches of the layer LLaVA reads (the second-to-last, CLS dropped)."""
    from transformers import CLIPImageProcessorPil, CLIPVisionModel

    tower = CLIPVisionModel.from_pretrained(vision_dir).eval()
    pixels = CLIPImageProcessorPil.from_pretrained(vision_dir)(images=images, return_tensors="pt")["pixel_values"]
    feats = tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
    return torch.cat([feats.mean(1), feats.amax(1)], dim=1)


def linear_probe(train_x: torch.Tensor, train_y: list[str], test_x: torch.Tensor, test_y: list[str]) -> float:
    """Held-out accuracy of a logistic regression (standardised features, L2, full-batch L-BFGS)."""
    classes = sorted(set(train_y))
    ytr = torch.tensor([classes.index(y) for y in train_y])
    yte = torch.tensor([classes.index(y) for y in test_y])
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    torch.manual_seed(0)
    linear = torch.nn.Linear(xtr.shape[1], len(classes))
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(xtr), ytr) + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (linear(xte).argmax(1) == yte).float().mean().item()


def probe(vision_dir: Path, images: dict[str, list[Image.Image]], captions: list[str]) -> dict[str, dict[str, float]]:
    """Probe accuracy per view (crop, padded) and label (shape, colour): fit on the first 80% of the captioned
    images, score the rest."""
    words = [c.rstrip(".").split() for c in captions]  # "A small red circle."
    labels = {"colour": [w[2] for w in words], "shape": [w[3] for w in words]}
    cut = int(0.8 * len(captions))
    result = {}
    for view, imgs in images.items():
        feats = tower_features(vision_dir, imgs)
        result[view] = {kind: linear_probe(feats[:cut], y[:cut], feats[cut:], y[cut:]) for kind, y in labels.items()}
    return result


def main(data_dir: str, out_dir: str, clip_steps: int = 3000, llm_steps: int = 200) -> None:
    data, out = Path(data_dir), Path(out_dir)
    size = TinySpec().image_size
    mean_colour = tuple(int(x * 255) for x in tiny_image_processor(TinySpec()).image_mean)
    both, align = load_views(data, "align.json", size, mean_colour)  # the captioned training images
    captions = [r["conversations"][-1]["value"] for r in align]
    colour_only = [" ".join(c.split()[:3]) + " shape." for c in captions]  # "A small red circle." -> "... red shape."
    pretrain_tiny_clip(both["crop"] + both["padded"], captions + colour_only, out / "vision",
                       settings=PretrainSettings(steps=clip_steps))
    report = probe(out / "vision", both, captions)
    (out / "probe.json").write_text(json.dumps(report, indent=1))
    for view, accs in report.items():
        print(f"tower linear probe, {view:6s} view: " + ", ".join(f"{k} {v:.0%}" for k, v in accs.items()))
    if report["crop"]["shape"] < 0.8:  # the LLaVA runs could not show anything: stop before spending time on them
        raise SystemExit(f"the tower tells shapes apart in only {report['crop']['shape']:.0%} of crops (< 80%): "
                         "give the CLIP more steps")
    instruct = json.loads((data / "instruct.json").read_text())
    texts = [r["conversations"][-1]["value"] for r in align]
    texts += [t["value"].replace("<image>", "").strip() for r in instruct for t in r["conversations"]]
    pretrain_tiny_llm(texts, out / "llm", settings=PretrainSettings(steps=llm_steps))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
