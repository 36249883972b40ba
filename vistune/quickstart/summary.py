"""summary.json from the quickstart's phases, then the report and plots built from it."""

from __future__ import annotations

import json
from pathlib import Path

from vistune.quickstart.report import (
    closing_table,
    plot_accuracy,
    plot_accuracy_by_step,
    plot_losses,
    plot_rl,
    read_eval,
    read_losses,
    read_rl_curves,
    write_report,
)


def _fractions(metrics: dict, prefix: str) -> dict[str, float]:
    """{'colour': 0.97, ..., 'overall': 0.9} from the shapes scorer's percent metrics."""
    per_type = {k.split("/", 1)[1]: round(v / 100, 4) for k, v in metrics.items() if k.startswith(prefix + "/")}
    overall_key = "accuracy" if prefix == "accuracy" else "chance"
    return {**dict(sorted(per_type.items())), "overall": round(metrics.get(overall_key, 0.0) / 100, 4)}


def build_summary(*, settings, wall_seconds: dict, after_align: dict, after_instruct: dict, artifacts: dict,
                  demo: dict) -> dict:
    """`settings` is the run's QuickstartSettings as a plain dict (JSON-ready)."""
    return {
        "preset": settings["preset"],
        "fast": settings["fast"],
        "settings": settings,
        "accuracy": {"after_align": _fractions(after_align, "accuracy"),
                     "after_instruct": _fractions(after_instruct, "accuracy")},
        "chance": _fractions(after_instruct, "chance"),
        "questions": int(after_instruct.get("count", 0)),
        "wall_seconds": {**wall_seconds, "total": round(sum(wall_seconds.values()), 2)},
        "demo": demo,
        "artifacts": artifacts,
    }


def write_outputs(summary: dict, out: Path, pretrain_losses: dict[str, list[float]], runs: Path) -> None:
    """summary.json, plots/*.png, report.md, and the closing table on the terminal."""
    curves = {name: (list(range(1, len(v) + 1)), v) for name, v in pretrain_losses.items()}
    curves["align"] = read_losses(runs / "align" / "log.jsonl")
    curves["instruct"] = read_losses(runs / "instruct" / "log.jsonl")
    plots = plot_losses(curves, out / "plots")
    plots.append(plot_accuracy(summary["accuracy"], summary["chance"], out / "plots"))
    by_step = read_eval(runs / "instruct" / "log.jsonl", "shapes")
    summary["accuracy_by_step"] = {"instruct": by_step}
    if by_step["step"]:
        plots.append(plot_accuracy_by_step(by_step, summary["chance"], out / "plots"))
    rl_curves = read_rl_curves(runs / "rl" / "log.jsonl") if "rl" in summary else {"step": []}
    if rl_curves["step"]:
        plots.append(plot_rl(rl_curves, out / "plots"))
    summary["artifacts"].update({"plots": [str(p) for p in plots], "report": str(out / "report.md"),
                                 "summary": str(out / "summary.json")})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_report(summary, out, [p for p in plots if p.name in ("loss_curves.png", "accuracy.png", "accuracy_steps.png", "rl.png")])
    print("\n" + closing_table(summary))
    demo = summary["demo"]
    print(f"\nexported model, held-out question: {demo['question']!r} -> {demo['answer']!r} "
          f"(expected {demo['expected']!r})")
    print(f"report: {out / 'report.md'}")
