"""Score a predictions file, print metrics as a table, compare two runs side by side.

A run directory holds `predictions.jsonl` and `metrics.json` (`{"benchmark", "metrics", ...}`); `compare`
accepts run directories or metrics.json files.
"""

from __future__ import annotations

import json
from pathlib import Path

from vistune.eval.benchmarks import get_benchmark
from vistune.eval.items import read_jsonl

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"


def score_file(benchmark: str, predictions: str | Path, settings: dict[str, str] | None = None) -> dict:
    """Scores a predictions JSONL with the benchmark's reference-exact scorer; no model involved.

    `settings` overrides the scorer's defaults (e.g. mmbench's `rule`); the result records those used.
    """
    bench = get_benchmark(benchmark)
    settings = bench.resolve_settings(settings)
    rows = read_jsonl(predictions)
    missing = [f for f in bench.reference_fields if rows and f not in rows[0] and f not in ("category", "round")]
    if missing:
        raise ValueError(f"{predictions}: {benchmark} predictions need the fields {missing} (see docs/eval.md)")
    result = {"benchmark": benchmark, "primary": bench.primary, "metrics": bench.score(rows, **settings)}
    return {**result, "score_settings": settings} if settings else result


def write_metrics(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def load_metrics(run: str | Path) -> dict:
    path = Path(run)
    if path.is_dir():
        path = path / METRICS_FILE
    return json.loads(path.read_text(encoding="utf-8"))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def format_table(result: dict) -> str:
    """Two columns, the primary metric first."""
    metrics = result["metrics"]
    primary = result.get("primary")
    names = ([primary] if primary in metrics else []) + [k for k in metrics if k != primary]
    width = max([len(n) for n in names] + [6])
    lines = [f"{result.get('benchmark', '')}".strip() or "metrics", f"{'metric':{width}s}  value"]
    lines += [f"{n:{width}s}  {_fmt(metrics[n])}" for n in names]
    return "\n".join(lines)


def compare_runs(run_a: str | Path, run_b: str | Path) -> str:
    """A side-by-side table of two runs' metrics, with B - A for numbers present in both."""
    a, b = load_metrics(run_a), load_metrics(run_b)
    ma, mb = a["metrics"], b["metrics"]
    names = list(ma) + [k for k in mb if k not in ma]
    width = max([len(n) for n in names] + [6])
    head = f"{'metric':{width}s}  {'A':>10s}  {'B':>10s}  {'B - A':>10s}"
    lines = [f"A: {run_a} ({a.get('benchmark', '?')})", f"B: {run_b} ({b.get('benchmark', '?')})", head]
    for n in names:
        va, vb = ma.get(n), mb.get(n)
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        lines.append(f"{n:{width}s}  {_fmt(va):>10s}  {_fmt(vb):>10s}  {_fmt(delta):>10s}")
    return "\n".join(lines)
