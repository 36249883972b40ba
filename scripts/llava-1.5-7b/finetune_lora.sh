#!/usr/bin/env bash
# LLaVA-1.5-7B stage 2 (LoRA r 128 + projector on mix665k) with the published hyper-parameters (configs/llava-1.5-7b/finetune_lora.yaml).
# Usage:   scripts/llava-1.5-7b/finetune_lora.sh [key=value ...]      e.g. data.path=/data/x.json output_dir=runs/x
# Env:     NUM_GPUS (per node, default 8); LAUNCHER=deepspeed (default) or accelerate; HOSTFILE for multi-node
#          DeepSpeed runs (see scripts/launch_recipe.sh). The global batch stays at the published 128: grad_accum = 128 / (16 x NUM_GPUS x nodes).
# Resume:  rerun the same command; resume=auto continues from the newest complete checkpoint.
CONFIG=configs/llava-1.5-7b/finetune_lora.yaml
GLOBAL_BATCH=128
PER_DEVICE=16
source "$(dirname "$0")/../launch_recipe.sh" "$@"
