"""The data benchmark: a LLaVA-665k-shaped file, and what loading it costs (cold cache build, warm start, memory).

`scripts/bench_data.py` drives it. Each measurement runs in its own process (so RSS is that process's alone);
LLaVA's lazy loader (the JSON list kept in memory, tokenised per item) is mimicked on the same file beside it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

WORDS = ("the a image shows person dog cat table street car tree sky blue red green white black wooden small large "
         "sitting standing near next to on in of with and is are there what where how many color describe "
         "detail picture scene building window people two three left right top bottom background front").split()


def write_llava_like(out_dir: str | Path, n: int = 665_000, n_images: int = 300, text_only: float = 0.06,
                     seed: int = 0) -> Path:
    """`llava_like.json` (+ images/): 1-8 turns per record, ~1,050 characters of text, `text_only` without image."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for k in range(n_images):
        path = out / "images" / f"{k:05d}.jpg"
        if not path.exists():
            Image.new("RGB", (64 + k % 7 * 16, 48 + k % 5 * 16), (k * 37 % 256, k * 91 % 256, k * 13 % 256)).save(path)
    words = [rng.choice(WORDS) for _ in range(200_000)]

    def text(n_words: int) -> str:
        start = rng.randrange(len(words) - n_words)
        return " ".join(words[start:start + n_words])

    path = out / "llava_like.json"
    with path.open("w", encoding="utf-8") as f:
        f.write("[")
        for i in range(n):
            turns = rng.randint(1, 8)
            budget = max(8, int(rng.gauss(170, 60)))  # words; ~6 characters each
            conv = []
            for t in range(turns):
                q = text(max(3, budget // (turns * 4)))
                conv.append({"from": "human", "value": ("<image>\n" + q) if t == 0 else q})
                conv.append({"from": "gpt", "value": text(max(2, 3 * budget // (turns * 4)))})
            record = {"id": f"r{i}", "conversations": conv}
            if rng.random() < text_only:
                conv[0]["value"] = conv[0]["value"].replace("<image>\n", "")
            else:
                record["image"] = f"images/{rng.randrange(n_images):05d}.jpg"
            f.write(("," if i else "") + json.dumps(record))
        f.write("]")
    return path


def memory(pid: int) -> dict[str, float]:
    """MiB a process holds, from /proc/PID/smaps_rollup: `rss` (every page mapped), `uss` (pages no other process
    maps, file-backed ones included) and `anon` (anonymous pages: heap, Python objects, arrays, copies).

    `anon` is what the process adds to the machine's memory. USS also counts the pages of a memory-mapped file
    (the tokenised cache, shared libraries) that only this process has touched so far: page cache, shared with
    every process that maps the file and dropped under pressure, so not memory the process adds."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return {"rss": fields["Rss"], "uss": fields["Private_Clean"] + fields["Private_Dirty"], "anon": fields["Anonymous"]}


def peak_rss(cmd: list[str], env: dict | None = None, interval: float = 0.2) -> dict:
    """Runs `cmd`; wall and CPU seconds, and the peak RSS / USS / anonymous memory (MiB, see `memory`) of the
    process, and the peak RSS of its whole tree."""
    import resource

    import psutil

    start, before = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = {"rss": 0.0, "uss": 0.0, "anon": 0.0, "tree_rss": 0.0}
    while proc.poll() is None:
        try:
            mine = memory(proc.pid)
            tree = mine["rss"] + sum(c.memory_info().rss for c in ps.children(recursive=True)) / 2**20
            for key in ("rss", "uss", "anon"):
                peak[key] = max(peak[key], mine[key])
            peak["tree_rss"] = max(peak["tree_rss"], tree)
        except (OSError, KeyError, psutil.Error):  # the process just exited
            pass
        time.sleep(interval)
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the process and every descendant it waited for
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"started": start, "seconds": round(time.time() - start, 1), "cpu_seconds": round(cpu, 1),
            **{k: round(v) for k, v in peak.items()}, "output": output}


def python(*code_args: str) -> list[str]:
    return [sys.executable, "-c", *code_args]


def env_for(cache: Path) -> dict:
    env = dict(os.environ, VISTUNE_CACHE=str(cache), TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1")
    return env
