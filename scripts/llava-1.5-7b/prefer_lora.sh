#!/usr/bin/env bash
# LLaVA-1.5-7B stage 3 (prefer: DPO with LoRA) on an RLAIF-V-style set, from the stage-2 LoRA run
# (configs/llava-1.5-7b/prefer_lora.yaml). Memory and hours: vistune plan configs/llava-1.5-7b/prefer_lora.yaml
# Usage:   scripts/llava-1.5-7b/prefer_lora.sh [key=value ...]   e.g. data.path=/data/RLAIF-V-Dataset preference.start=runs/x
# Env:     NUM_GPUS (per node, default 8); LAUNCHER=deepspeed (default) or accelerate; HOSTFILE for multi-node
#          DeepSpeed runs (see scripts/launch_recipe.sh). Global batch 64 pairs: grad_accum = 64 / (4 x NUM_GPUS x nodes).
# Resume:  rerun the same command; resume=auto continues from the newest complete checkpoint.
CONFIG=configs/llava-1.5-7b/prefer_lora.yaml
GLOBAL_BATCH=64
PER_DEVICE=4
source "$(dirname "$0")/../launch_recipe.sh" "$@"
