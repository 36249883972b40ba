"""The bench's summary: per-variant medians, per-round ratios against the first variant, a table and JSON."""

from __future__ import annotations

import statistics

RATIO_KEYS = ("samples_per_s", "tokens_per_s", "mfu", "samples_per_cpu_s")
_COLUMNS = [  # (heading, key, format)
    ("samples/s", "samples_per_s", "{:.2f}"), ("tokens/s", "tokens_per_s", "{:.0f}"),
    ("img tok/s", "image_tokens_per_s", "{:.0f}"), ("padding", "padding_fraction", "{:.1%}"),
    ("data wait", "wait_fraction", "{:.1%}"), ("peak MiB", "peak_memory_mib", "{:.0f}"),
    ("GFLOP/s", "model_flops_per_s", "{:.1f}"), ("MFU", "mfu", "{:.1%}"), ("smp/cpu-s", "samples_per_cpu_s", "{:.2f}"),
]


def summary(result) -> dict[str, dict[str, float]]:
    """Median of every measured field, per variant."""
    out = {}
    for v in result.variants:
        runs = [r for r in result.runs if r.variant == v.name]
        out[v.name] = {key: statistics.median(getattr(r, key) for r in runs)
                       for _, key, _ in _COLUMNS} if runs else {}
        if runs:
            out[v.name]["model_flops_per_s"] = statistics.median(r.model_flops_per_s for r in runs)
    return out


def ratios(result) -> dict[str, dict[str, dict]]:
    """Each variant over the first, pairing runs of the same round: min / median / max and the per-round list."""
    if len(result.variants) < 2:
        return {}
    base = result.variants[0].name
    by_round = {(r.variant, r.round): r for r in result.runs}
    out = {}
    for v in result.variants[1:]:
        out[v.name] = {}
        for key in RATIO_KEYS:
            values = [getattr(by_round[(v.name, k)], key) / getattr(by_round[(base, k)], key)
                      for (name, k) in by_round if name == v.name and (base, k) in by_round
                      and getattr(by_round[(base, k)], key)]
            if values:
                out[v.name][key] = {"min": min(values), "median": statistics.median(values), "max": max(values),
                                    "per_round": [round(x, 4) for x in values]}
    return out


def format_table(result) -> str:
    s = summary(result)
    width = max(len(v.name) for v in result.variants)
    head = f"{'variant':{width}s}  " + "  ".join(f"{h:>9s}" for h, _, _ in _COLUMNS)
    lines = [f"peak: {result.peak.flops_per_s / 1e9:.1f} GFLOP/s ({result.peak.source}); "
             f"{result.threads} threads; medians over {len(result.runs) // max(1, len(result.variants))} rounds",
             head, "-" * len(head)]
    for v in result.variants:
        row = s[v.name]
        cells = [fmt.format(row[key] / 1e9 if key == "model_flops_per_s" else row[key]) for _, key, fmt in _COLUMNS]
        lines.append(f"{v.name:{width}s}  " + "  ".join(f"{c:>9s}" for c in cells))
    r = ratios(result)
    if r:
        lines.append(f"ratios vs {result.variants[0].name} (per interleaved pair; min / median / max):")
        for name, keys in r.items():
            parts = [f"{k} {d['min']:.2f} / {d['median']:.2f} / {d['max']:.2f}" for k, d in keys.items()]
            lines.append(f"  {name}: " + "; ".join(parts))
    return "\n".join(lines)
