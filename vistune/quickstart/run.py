"""`vistune quickstart`: the whole pipeline on a laptop CPU in minutes, proving that the model learned.

It runs the very code paths users run on GPUs: synthetic data written as LLaVA JSON + images, foundation
parts saved as standard checkpoints, `vistune train` on the YAML recipes in configs/quickstart/,
`vistune eval run` on held-out questions after each stage, and `vistune export`.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import vistune

CONFIG_DIR = Path(vistune.__file__).resolve().parents[1] / "configs" / "quickstart"
PRESETS = ("tiny", "smollm2")


@dataclass
class QuickstartSettings:
    out: Path = Path("quickstart")  # everything is written under this directory
    preset: str = "tiny"  # tiny: tiny CLIP + tiny Llama, both pretrained here; smollm2: tiny CLIP + SmolLM2-135M
    fast: bool = False  # a shortened run (CI): fewer images and steps, same phases and artifacts
    seed: int = 0
    images: int = 2000  # synthetic training images (each gives a caption and a conversation)
    clip_steps: int = 200  # contrastive steps of the tiny CLIP
    llm_steps: int = 150  # next-token steps of the tiny Llama
    align_steps: int = 150  # stage 1 optimizer steps
    instruct_steps: int = 480  # stage 2 optimizer steps (every type is learned by ~400)
    vision_size: int = 48  # the tiny CLIP's input side (pixels); the synthetic images are 64 px
    vision_patch: int = 16  # its patch side: (48 / 16)^2 = 9 image tokens, one per cell of the synthetic 3 x 3 grid
    llm_vocab: int = 1024  # the tiny Llama's BPE size: whole words keep prompts short, so images weigh more
    threads: int = 1  # torch CPU threads: the tiny models gain nothing from more, and lose ~10x on a loaded machine
    eval_points: int = 10  # held-out evaluations during stage 2 (evenly spaced; the last after its final step)
    prefer: bool = False  # also run stage 3 (prefer: DPO on synthetic preference pairs) after instruct
    prefer_pairs: int = 600  # synthetic preference pairs to train on (held-out pairs: a third of that, >= 40)
    prefer_steps: int = 240  # stage 3 optimizer steps (16 pairs each: 6.4 epochs of the 600 pairs)
    rl: bool = False  # also run stage rl (GRPO with the exact-answer reward on new questions) after instruct
    rl_questions: int = 800  # synthetic rl questions to train on (held-out questions: half of that, >= 40)
    rl_steps: int = 600  # stage rl optimizer steps (4 questions x 8 completions each; 3 epochs of 800 questions)
    extra: dict = field(default_factory=dict)  # more key=value overrides for both stages

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {PRESETS}, got {self.preset!r}")
        self.out = Path(self.out)
        if self.fast:
            self.images, self.clip_steps, self.llm_steps = 200, 30, 30
            self.align_steps, self.instruct_steps, self.eval_points = 10, 10, 2
            self.prefer_pairs, self.prefer_steps = 64, 6
            self.rl_questions, self.rl_steps = 64, 10  # one log line (logging_steps 10)


class PhaseTimer:
    """Wall seconds per named phase, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)


def run_quickstart(s: QuickstartSettings) -> dict:
    """Runs every phase and writes summary.json, report.md and plots/; returns the summary."""
    import torch

    from vistune.data_prep import synthesize

    torch.set_num_threads(s.threads)
    out = s.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timer = PhaseTimer()
    with timer("data"):
        data = synthesize(out / "data", n=s.images, seed=s.seed)
    vision, llm, pretrain_losses = _foundation_parts(s, out, data, timer)
    template = "vicuna_v1" if s.preset == "tiny" else "chatml"
    parts = [f"model.vision={vision}", f"model.llm={llm}", f"seed={s.seed}", *(f"{k}={v}" for k, v in s.extra.items())]
    runs = out / "runs"
    with timer("align"):
        _train("align.yaml", parts + [f"data.path={data['align']}", f"data.image_root={out / 'data'}",
                                      f"output_dir={runs / 'align'}", f"optim.max_steps={s.align_steps}"])
    with timer("eval_align"):
        after_align = _evaluate(runs / "align", data["heldout"], out / "eval" / "align", template)
    with timer("instruct"):
        _train("instruct.yaml", parts + [f"data.path={data['instruct']}", f"data.image_root={out / 'data'}",
                                         f"data.template={template}", f"model.projector={runs / 'align'}",
                                         f"output_dir={runs / 'instruct'}", f"optim.max_steps={s.instruct_steps}",
                                         _heldout_while_training(data["heldout"], s)])
    with timer("eval_instruct"):
        after_instruct = _evaluate(runs / "instruct", data["heldout"], out / "eval" / "instruct", template)
    prefer = _prefer(s, out, parts, template, timer) if s.prefer else None
    rl = _rl(s, out, parts, template, timer) if s.rl else None
    with timer("export"):
        from vistune.train.saving.export import export

        export_dir = out / "export"
        if export_dir.exists():
            import shutil

            shutil.rmtree(export_dir)
        export(runs / "instruct", export_dir, mode="merged", dtype="float32")
    with timer("demo"):
        demo = _demo(export_dir, data["heldout"], out / "data", template)

    from vistune.quickstart.summary import build_summary, write_outputs

    summary = build_summary(
        settings=settings_dict(s), wall_seconds=timer.seconds, after_align=after_align, after_instruct=after_instruct,
        artifacts={
            "data": str(out / "data"), "vision": str(vision), "llm": str(llm),
            "align_run": str(runs / "align"), "instruct_run": str(runs / "instruct"),
            "eval_align": str(out / "eval" / "align"), "eval_instruct": str(out / "eval" / "instruct"),
            "export": str(export_dir),
        },
        demo=demo,
    )
    if prefer is not None:
        from vistune.quickstart.summary import _fractions

        summary["accuracy"]["after_prefer"] = _fractions(prefer.pop("shapes"), "accuracy")
        summary["preference"] = prefer
        summary["artifacts"]["prefer_run"] = str(runs / "prefer")
    if rl is not None:
        summary["rl"] = rl
        summary["artifacts"]["rl_run"] = str(runs / "rl")
    write_outputs(summary, out, pretrain_losses, runs)
    return summary


def _rl(s: QuickstartSettings, out: Path, parts: list[str], template: str, timer: PhaseTimer) -> dict:
    """Stage rl on new synthetic questions (exact-answer reward); held-out accuracy per question type before
    (the stage-2 model) and after, on questions whose images no stage has seen."""
    from vistune.data_prep.synth.rl import synthesize_rl
    from vistune.quickstart.summary import _fractions

    runs = out / "runs"
    with timer("rl_data"):
        data = synthesize_rl(out / "data", n=s.rl_questions, seed=s.seed + 2, n_heldout=max(40, s.rl_questions // 2))
    with timer("eval_rl_before"):
        before = _evaluate(runs / "instruct", str(data["rl_heldout"]), out / "eval" / "rl_before", template)
    with timer("rl"):
        _train("rl.yaml", parts + [f"data.path={data['rl']}", f"data.image_root={out / 'data'}",
                                   f"data.template={template}", f"rl.start={runs / 'instruct'}",
                                   f"output_dir={runs / 'rl'}", f"optim.max_steps={s.rl_steps}"])
    with timer("eval_rl_after"):
        after = _evaluate(runs / "rl", str(data["rl_heldout"]), out / "eval" / "rl_after", template)
    return {"heldout_questions": int(after.get("count", 0)), "accuracy_before": _fractions(before, "accuracy"),
            "accuracy_after": _fractions(after, "accuracy")}


def _prefer(s: QuickstartSettings, out: Path, parts: list[str], template: str, timer: PhaseTimer) -> dict:
    """Stage 3 on synthetic pairs (images never seen before); preference accuracy on held-out pairs before and
    after, and the shapes accuracy after (it must not fall)."""
    from vistune.data_prep.synth import synthesize_preferences
    from vistune.eval.loading import load_model
    from vistune.eval.preference import preference_accuracy

    runs = out / "runs"
    with timer("prefer_data"):
        data = synthesize_preferences(out / "data", n=s.prefer_pairs, seed=s.seed + 1,
                                      n_heldout=max(40, s.prefer_pairs // 3))

    def accuracy(run: Path) -> dict:
        model, processor, _ = load_model(str(run))
        return preference_accuracy(model, processor, data["prefer_heldout"], template, image_root=out / "data")

    with timer("eval_prefer_before"):
        before = accuracy(runs / "instruct")
    with timer("prefer"):
        _train("prefer.yaml", parts + [f"data.path={data['prefer']}", f"data.image_root={out / 'data'}",
                                       f"data.template={template}", f"preference.start={runs / 'instruct'}",
                                       f"output_dir={runs / 'prefer'}", f"optim.max_steps={s.prefer_steps}"])
    with timer("eval_prefer"):
        after = accuracy(runs / "prefer")
        shapes = _evaluate(runs / "prefer", str(out / "data" / "heldout.json"), out / "eval" / "prefer", template)
    return {"heldout_pairs": after["pairs"], "accuracy_before": before, "accuracy_after": after, "shapes": shapes}


def _foundation_parts(s: QuickstartSettings, out: Path, data: dict, timer: PhaseTimer):
    """Pretrains the tiny CLIP (and, for the tiny preset, the tiny Llama) on the synthetic data's text."""
    from PIL import Image

    from vistune.model.tiny import TinySpec
    from vistune.model.tiny.pretrain import PretrainSettings, pretrain_tiny_clip, pretrain_tiny_llm

    align = json.loads(Path(data["align"]).read_text())
    captions = [r["conversations"][-1]["value"] for r in align]
    losses = {}
    with timer("pretrain_clip"):
        images = [Image.open(out / "data" / r["image"]).convert("RGB") for r in align]
        losses["pretrain_clip"] = pretrain_tiny_clip(
            images, captions, out / "parts" / "vision", spec=TinySpec(image_size=s.vision_size, patch_size=s.vision_patch),
            settings=PretrainSettings(steps=s.clip_steps, seed=s.seed),
        )
    if s.preset == "smollm2":
        return out / "parts" / "vision", "smollm2-135m", losses
    instruct = json.loads(Path(data["instruct"]).read_text())
    # Whole conversations, one text each: answers then follow a space, as they follow "ASSISTANT:" in the template
    # (" 2" and "2" are different tokens; an LLM that never saw " 2" cannot say it).
    texts = captions + [" ".join(t["value"].replace("<image>", "").strip() for t in r["conversations"]) for r in instruct]
    with timer("pretrain_llm"):
        losses["pretrain_llm"] = pretrain_tiny_llm(
            texts, out / "parts" / "llm", spec=TinySpec(vocab_size=s.llm_vocab),
            settings=PretrainSettings(steps=s.llm_steps, seed=s.seed)
        )
    return out / "parts" / "vision", out / "parts" / "llm", losses


def _train(recipe: str, overrides: list[str]) -> None:
    """Exactly what `vistune train configs/quickstart/RECIPE k=v ...` does."""
    from vistune.train.run.config import load_config
    from vistune.train.stages.engine import train

    result = train(load_config(CONFIG_DIR / recipe, overrides))
    if result.status != "done":
        raise RuntimeError(f"training stopped early ({result.status}); rerun to resume")


def _heldout_while_training(heldout: str, s: QuickstartSettings) -> str:
    """The `eval:` override that asks the held-out questions every tenth of stage 2 (the accuracy-vs-step plot)."""
    entry = {"benchmark": "shapes", "data": str(heldout), "every": max(1, s.instruct_steps // s.eval_points),
             "max_new_tokens": 8, "batch_size": 32}
    return "eval=" + json.dumps([entry])


def _evaluate(model_dir: Path, heldout: str, out: Path, template: str) -> dict:
    """Exactly what `vistune eval run --benchmark shapes` does; returns the metrics."""
    from vistune.eval import EvalRunConfig, run_eval
    from vistune.eval.generate import GenerationSettings

    config = EvalRunConfig(model=str(model_dir), benchmark="shapes", data=str(heldout), out=str(out),
                           template=template, generation=GenerationSettings(max_new_tokens=8, batch_size=32))
    return run_eval(config)["metrics"]


def _demo(export_dir: Path, heldout: str, image_root: Path, template: str) -> dict:
    """One held-out question answered by the exported model, as `vistune chat --prompt` would."""
    from vistune.eval import Generator
    from vistune.eval.chat import chat
    from vistune.eval.loading import load_model

    record = json.loads(Path(heldout).read_text())[0]
    question = record["conversations"][0]["value"].replace("<image>", "").strip()
    model, processor, _ = load_model(str(export_dir))
    generator = Generator(model, processor, template, image_root=str(image_root))
    turns = chat(generator, str(image_root / record["image"]), question, write=lambda _: None)
    return {"image": str(image_root / record["image"]), "question": question, "expected": record["answer"],
            "answer": turns[-1][1], "command": f"vistune chat --model {export_dir} --image "
            f"{image_root / record['image']} --prompt {json.dumps(question)}"}


def settings_dict(s: QuickstartSettings) -> dict:
    d = asdict(s)
    d["out"] = str(s.out)
    return d
