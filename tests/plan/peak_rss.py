"""Measures the resident-memory growth of tiny LLaVA training steps on CPU (run by test_memory_tiny.py).

One fresh process measures every case in turn. Before each, the kernel's peak-RSS mark is reset
(/proc/self/clear_refs "5"); growth = peak RSS (VmHWM) during two AdamW steps minus RSS once the model is
built and warmed up (Adam states already exist). glibc serves allocations over 64 KiB with mmap (mallopt), so
freed tensors leave RSS at once and RSS follows live tensors, as the CUDA allocator's counters do on a GPU.
Input: a JSON list of cases on argv; output: one JSON line, a list of {"growth", "saved"} in bytes.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys

M_MMAP_THRESHOLD = -3


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure(vision: str, llm: str, stage: str, method: str, gc_on: bool, batch: int, tokens: int, lora_r: int) -> dict:
    import torch

    from vistune.model import LoraSettings, apply_stage_policy, attach_lora, build_llava

    torch.manual_seed(0)
    model, _ = build_llava(vision, llm)
    if stage == "instruct" and method == "lora":
        model = attach_lora(model, LoraSettings(r=lora_r, alpha=2 * lora_r, dropout=0.05))
    apply_stage_policy(model, stage, method)
    model.train()
    if gc_on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = model.config
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    side = config.vision_config.image_size
    ids = torch.randint(5, 300, (batch, tokens))
    ids[:, 1 : 1 + config.image_seq_length] = config.image_token_index
    pixels = torch.randn(batch, 3, side, side)

    def step(ids, pixels):
        model(input_ids=ids, pixel_values=pixels, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(ids[:1, : config.image_seq_length + 8], pixels[:1])  # warm-up: code pages, thread pools, Adam states
    gc.collect()
    _reset_peak()
    before = _status("VmRSS")
    step(ids, pixels)
    step(ids, pixels)
    growth = _status("VmHWM") - before

    saved = 0
    if not gc_on:  # the exact bytes autograd keeps (checkpointing hides them behind its own hooks)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages: dict[int, int] = {}

        def pack(t):
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                storages[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids, pixel_values=pixels, labels=ids)
        saved = sum(storages.values())
    return {"growth": growth, "saved": saved}


def main(cases: list[dict]) -> list[dict]:
    import torch

    ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    torch.set_num_threads(2)
    results = []
    for case in cases:
        results.append(measure(**case))
        gc.collect()
    return results


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
