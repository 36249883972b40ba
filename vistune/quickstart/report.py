"""The quickstart's results for a person: plots, a markdown report and the closing terminal table."""

from __future__ import annotations

import json
from pathlib import Path


def read_losses(log_jsonl: str | Path) -> tuple[list[int], list[float]]:
    """(steps, losses) from a training log.jsonl (lines with a 'loss' field; others are skipped)."""
    steps, losses = [], []
    path = Path(log_jsonl)
    if not path.exists():
        return steps, losses
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loss" in row and "step" in row:
            steps.append(int(row["step"]))
            losses.append(float(row["loss"]))
    return steps, losses


def read_eval(log_jsonl: str | Path, name: str) -> dict[str, list]:
    """{'step': [...], 'colour': [...], ..., 'overall': [...]}: held-out accuracy (0-1) logged while training.

    Reads the eval/<name>/accuracy[/<type>] lines that `eval:` entries (vistune.train.stages.live_eval) add to log.jsonl."""
    prefix = f"eval/{name}/accuracy"
    curves: dict[str, list] = {"step": []}
    path = Path(log_jsonl)
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if prefix not in row:
            continue
        curves["step"].append(int(row["step"]))
        for key, value in row.items():
            if key == prefix or key.startswith(prefix + "/"):
                kind = key[len(prefix) + 1:] or "overall"
                curves.setdefault(kind, []).append(round(float(value) / 100, 4))
    return curves


def plot_accuracy_by_step(curves: dict[str, list], chance: dict[str, float], out_dir: Path) -> Path:
    """Held-out accuracy per question type against the stage-2 step (dashed: overall chance)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for kind, values in curves.items():
        if kind != "step":
            ax.plot(curves["step"], values, marker="o", ms=3, lw=2.2 if kind == "overall" else 1.2, label=kind)
    ax.axhline(chance.get("overall", 0.0), color="k", ls="dashed", lw=1)
    ax.set(ylim=(0, 1.05), xlabel="stage-2 step", ylabel="held-out accuracy",
           title="held-out accuracy while training (dashed: chance)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, out_dir / "accuracy_steps.png")


def plot_losses(curves: dict[str, tuple[list[int], list[float]]], out_dir: Path) -> list[Path]:
    """One PNG per phase (loss_<phase>.png) plus all phases side by side (loss_curves.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    curves = {k: v for k, v in curves.items() if v[0]}
    for phase, (steps, losses) in curves.items():
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(steps, losses, lw=1.2)
        ax.set(title=f"{phase}: training loss", xlabel="step", ylabel="loss")
        ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / f"loss_{phase}.png"))
    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
        for ax, (phase, (steps, losses)) in zip(axes[0], curves.items()):
            ax.plot(steps, losses, lw=1.2)
            ax.set(title=phase, xlabel="step", ylabel="loss")
            ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / "loss_curves.png"))
    return written


def plot_accuracy(accuracy: dict[str, dict[str, float]], chance: dict[str, float], out_dir: Path) -> Path:
    """Grouped bars: held-out accuracy per question type after each stage, with the chance level marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = [t for t in chance if t != "overall"] + ["overall"]
    stages = list(accuracy)
    width = 0.8 / max(1, len(stages))
    fig, ax = plt.subplots(figsize=(1.6 * len(types) + 2, 3.6))
    for i, stage in enumerate(stages):
        xs = [j + (i - (len(stages) - 1) / 2) * width for j in range(len(types))]
        ax.bar(xs, [accuracy[stage].get(t, 0.0) for t in types], width, label=stage)
    for j, t in enumerate(types):
        ax.hlines(chance.get(t, 0.0), j - 0.45, j + 0.45, colors="k", linestyles="dashed", lw=1)
    ax.set_xticks(range(len(types)), types)
    ax.set(ylim=(0, 1.05), ylabel="held-out accuracy", title="accuracy per question type (dashed: chance)")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, out_dir / "accuracy.png")


def read_rl_curves(log_jsonl: str | Path) -> dict[str, list]:
    """{'step': [...], 'rewards/<name>/mean': [...], 'completions/mean_length': [...], 'kl': [...]} from a stage-rl
    log.jsonl (each key only where every logged step has it)."""
    path = Path(log_jsonl)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    rows = [r for r in rows if "reward" in r]
    keys = [k for k in (rows[0] if rows else {}) if (k.startswith("rewards/") and k.endswith("/mean"))
            or k in ("completions/mean_length", "kl", "clip_ratio/region_mean")]
    return {"step": [r["step"] for r in rows], **{k: [r[k] for r in rows] for k in keys if all(k in r for r in rows)}}


def plot_rl(curves: dict[str, list], out_dir: Path) -> Path:
    """Stage rl against its step: each reward's mean (left), completion length (middle), KL and clip ratio
    (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    panels = [("reward (mean per function)", [k for k in curves if k.startswith("rewards/")]),
              ("completion length (tokens)", ["completions/mean_length"]),
              ("KL / clipped share", ["kl", "clip_ratio/region_mean"])]
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            if key in curves:
                ax.plot(curves["step"], curves[key], lw=1.2, label=key.removeprefix("rewards/").removesuffix("/mean"))
        ax.set(title=title, xlabel="rl step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out_dir / "rl.png")


def _save(fig, path: Path) -> Path:
    """Lays out, writes (110 dpi) and closes one figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def closing_table(summary: dict) -> str:
    """The terminal table: accuracy per question type after each stage, chance, and wall time per phase."""
    acc, chance = summary["accuracy"], summary["chance"]
    stages = list(acc)
    types = [t for t in chance if t != "overall"] + ["overall"]
    header = ["question type", "chance", *stages]
    rows = [[t, f"{chance.get(t, 0):.2f}", *(f"{acc[s].get(t, 0):.2f}" for s in stages)] for t in types]
    lines = _table(header, rows)
    if "preference" in summary:  # stage 3: preference accuracy on held-out pairs
        p = summary["preference"]
        kinds = list(p["accuracy_after"]["per_type"]) + ["overall"]
        pick = lambda r, k: r["accuracy"] if k == "overall" else r["per_type"].get(k, 0)  # noqa: E731
        lines += ["", *_table(["preference pairs", "before prefer", "after prefer"],
                              [[k, f"{pick(p['accuracy_before'], k):.2f}", f"{pick(p['accuracy_after'], k):.2f}"]
                               for k in kinds])]
    if "rl" in summary:  # stage rl: held-out accuracy on the rl questions before and after it, per type
        r = summary["rl"]
        lines += ["", *_table(["rl questions", "before rl", "after rl"],
                              [[k, f"{r['accuracy_before'].get(k, 0):.2f}", f"{r['accuracy_after'].get(k, 0):.2f}"]
                               for k in r["accuracy_after"]])]
    times = summary["wall_seconds"]
    lines += ["", *_table(["phase", "seconds"], [[k, f"{v:.1f}"] for k, v in times.items()])]
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(header), "-" * len(fmt(header)), *map(fmt, rows)]


def write_report(summary: dict, out_dir: Path, plots: list[Path]) -> Path:
    """report.md: what ran, the closing table, the plots embedded, and where every artifact is."""
    lines = [
        "# vistune quickstart report",
        "",
        f"Preset `{summary['preset']}`{' (fast run)' if summary.get('fast') else ''}: a tiny CLIP pretrained "
        "contrastively and a tiny LLM pretrained on the synthetic shapes text, composed into a "
        "`LlavaForConditionalGeneration`, aligned (stage 1, projector only), instruction-tuned "
        "(stage 2, LoRA + projector)"
        + (" and preference-tuned (stage 3, prefer: DPO on synthetic pairs, LoRA)" if "preference" in summary else "")
        + "; held-out questions are asked after each stage.",
        "",
        "```",
        closing_table(summary),
        "```",
        "",
    ]
    for plot in plots:
        lines += [f"![{plot.stem}]({plot.relative_to(out_dir).as_posix()})", ""]
    lines += ["## Artifacts", ""] + [f"- {k}: `{v}`" for k, v in summary["artifacts"].items()]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
