"""Test helper, run in a fresh process: loads an exported model with transformers + PEFT only (never vistune)
and writes its logits on a saved batch.

usage: python load_exported.py EXPORT_DIR MODE BATCH.pt LOGITS.pt
"""

import sys

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

out, mode, batch_path, logits_path = sys.argv[1:]
model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)  # Llava / LlavaNext / LlavaOnevision
print(type(model).__name__)
processor = AutoProcessor.from_pretrained(out)
assert processor.tokenizer is not None and processor.image_processor is not None
if mode == "base+lora":
    from peft import PeftModel

    model = PeftModel.from_pretrained(model, f"{out}/adapter")
model.eval()
batch = torch.load(batch_path)
with torch.no_grad():
    logits = model(**batch).logits.float()
    generated = model.generate(**batch, max_new_tokens=3, do_sample=False)  # it generates, too
assert batch["input_ids"].shape[1] < generated.shape[1] <= batch["input_ids"].shape[1] + 3
torch.save(logits, logits_path)
leaked = sorted(m for m in sys.modules if m == "vistune" or m.startswith("vistune."))
assert not leaked, f"vistune was imported: {leaked}"
print("OK")
