"""Data benchmark: cold cache build, warm start to the first step (and after a resume), RSS per process, the extra
RSS of each additional process sharing the cache, the doctor, and LLaVA's lazy loader on the same file.

    nice -n 5 python scripts/bench_data.py --work /tmp/databench --records 665000 --out databench.json

Weights do not matter for the data path: the model is the tiny preset with a 96 px / patch-4 tower
(576 image tokens per image, as CLIP-L/336) and a 2048-position LLM. Numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from vistune.bench.data import env_for, memory, peak_rss, python, write_llava_like

TOWER = "from vistune.model.tiny import TinySpec, ensure_tiny_parts; " \
        "V, L = ensure_tiny_parts(TinySpec(image_size=96, patch_size=4, max_positions=2048)); "
TEXT_SIDE = "from vistune.data_prep.text.text_side import TextSide, _tokenizer; " \
            "from vistune.model.compose import add_special_tokens; " + TOWER + \
            "tok = _tokenizer(str(L)); add_special_tokens(tok); "

COLD = TEXT_SIDE + """
import time, sys
from vistune.data_prep import get_template
from vistune.data_prep.store.cache import ensure_cache, CachedTable
t = time.time()
d = ensure_cache(sys.argv[1], tok, get_template('vicuna_v1'), num_image_tokens=576, max_length=2048, progress=True)
print('BUILD', time.time() - t, len(CachedTable(d)))
"""

# One data-only process as a rank sees it: processor, cached dataset, length sampler, a DataLoader's first 200 items.
RANK = TOWER + """
import sys, time
t = time.time()
from torch.utils.data import DataLoader
from vistune.model import build_llava
from vistune.data_prep import DataCollator, LengthGroupedSampler, get_template
from vistune.data_prep.batching.cached_dataset import CachedDataset
_, proc = build_llava(str(V), str(L))
ds = CachedDataset(sys.argv[1], proc, get_template('vicuna_v1'), image_root=sys.argv[2], num_image_tokens=576,
                   max_length=2048)
sampler = LengthGroupedSampler(ds.lengths, batch_size=16, world_size=4)
loader = DataLoader(ds, batch_size=16, sampler=sampler, collate_fn=DataCollator(proc.tokenizer.pad_token_id))
for k, batch in zip(range(12), loader):
    pass
print('RANK', time.time() - t, len(ds))
"""

# LLaVA's LazySupervisedDataset (llava/train/train.py): json.load of the whole list kept in memory, modality
# lengths counted over every record for the sampler, each item tokenised when it is read.
LAZY = TOWER + """
import json, sys, time
t = time.time()
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(str(L))
data = json.load(open(sys.argv[1]))
lengths = []
for s in data:
    n = sum(len(c['value'].split()) for c in s['conversations'])
    lengths.append(n if 'image' in s else -n)
for s in data[:192]:
    tok('\\n'.join(c['value'] for c in s['conversations'])).input_ids
print('LAZY', time.time() - t, len(data))
"""

DOCTOR = TEXT_SIDE + """
import sys, time
from vistune.data_prep.doctor import diagnose
t = time.time()
r = diagnose(sys.argv[1], text_side=TextSide(tok, 576, 'vicuna_v1'), max_length=2048, progress=True)
print('DOCTOR', time.time() - t, r.total, len(r.errors))
"""


def train_cmd(data: Path, out: Path, steps: int, save_steps: int) -> list[str]:
    code = TOWER + """
import sys
from vistune.cli import main
sys.exit(main(['train', 'configs/tiny/instruct_lora.yaml', 'model.preset=null', f'model.vision={V}', f'model.llm={L}',
               'model.projector=null', *sys.argv[1:]]))
"""
    return python(code, f"data.path={data}", f"data.image_root={data.parent}", f"output_dir={out}",
                  "data.max_length=2048", f"optim.max_steps={steps}", f"save_steps={save_steps}",
                  "optim.per_device_batch_size=4", "data.num_workers=0", "lora.r=8")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="directory for the data file, caches and runs")
    p.add_argument("--records", type=int, default=665_000)
    p.add_argument("--procs", type=int, default=4, help="concurrent processes sharing the cache")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--keep-cache", action="store_true", help="reuse a cache built earlier (skips the cold build)")
    p.add_argument("--only", default="doctor,train,ranks,lazy", help="which measurements after the build (comma list)")
    args = p.parse_args()
    work = Path(args.work)
    cache = work / "cache"
    env = env_for(cache)
    results: dict = {"records": args.records}
    data = work / "llava_like.json"
    if not data.exists():
        t = time.time()
        write_llava_like(work, n=args.records)
        results["generate_s"] = round(time.time() - t, 1)
    results["file_mib"] = round(data.stat().st_size / 2**20)

    def step(name: str, cmd: list[str], first_step_of: Path | None = None, after: int = 0) -> dict:
        r = peak_rss(cmd, env=env)
        if first_step_of is not None:  # launch -> the first optimizer step's log line (log.jsonl "time")
            steps = [json.loads(x) for x in (first_step_of / "log.jsonl").read_text().splitlines() if x.strip()]
            r["first_step_s"] = round(next(s["time"] for s in steps if s["step"] > after) - r["started"], 1)
        r.pop("started")
        line = [x for x in r.pop("output").splitlines() if x.split(" ")[0].isupper()][-1:]
        print(f"{name}: {r} {line}", flush=True)
        results[name] = r
        return r

    if not args.keep_cache:
        shutil.rmtree(cache / "tokenized", ignore_errors=True)
        step("cold_build", python(COLD, str(data)))
    only = set(args.only.split(","))
    if "doctor" in only:
        step("doctor", python(DOCTOR, str(data)))
    if "train" in only:
        runs = work / "runs"
        shutil.rmtree(runs, ignore_errors=True)
        step("warm_first_step", train_cmd(data, runs / "a", steps=1, save_steps=0), first_step_of=runs / "a")
        step("train_to_checkpoint", train_cmd(data, runs / "b", steps=2, save_steps=2))
        step("resume_first_step", train_cmd(data, runs / "b", steps=3, save_steps=0), first_step_of=runs / "b",
             after=2)
    if "ranks" in only:
        step("one_rank", python(RANK, str(data), str(data.parent)))
        shared_ranks(results, data, env, args.procs)
    if "lazy" in only:
        step("llava_lazy", python(LAZY, str(data)))
    import subprocess

    results["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(results["uptime"])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


def shared_ranks(results: dict, data: Path, env: dict, n: int) -> None:
    """n data-only ranks at once over the same cache: peak RSS, USS and anonymous memory of each (MiB; `anon` is
    what a process adds, see vistune.bench.data.memory)."""
    import subprocess

    procs = [subprocess.Popen(python(RANK, str(data), str(data.parent)), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(n)]
    peaks = [dict(rss=0.0, uss=0.0, anon=0.0) for _ in procs]
    while any(pr.poll() is None for pr in procs):
        for pk, pr in zip(peaks, procs):
            try:
                m = memory(pr.pid)
            except (OSError, KeyError):  # exited
                continue
            for key in pk:
                pk[key] = max(pk[key], m[key])
        time.sleep(0.2)
    results["shared_ranks"] = [{k: round(v) for k, v in pk.items()} for pk in peaks]
    print("shared_ranks:", results["shared_ranks"], flush=True)


if __name__ == "__main__":
    sys.exit(main())
