#!/usr/bin/env bash
# llava-next-7b finetune with the published hyper-parameters (configs/llava-next-7b/finetune.yaml; its header cites the source).
# Usage:   scripts/llava-next-7b/finetune.sh [key=value ...]
# Env:     NUM_GPUS (per node, default 8); LAUNCHER=deepspeed (default) or accelerate; HOSTFILE for multi-node
#          DeepSpeed runs (see scripts/launch_recipe.sh). The global batch stays at 128: grad_accum = 128 / (4 x NUM_GPUS x nodes).
# Resume:  rerun the same command; resume=auto continues from the newest complete checkpoint.
CONFIG=configs/llava-next-7b/finetune.yaml
GLOBAL_BATCH=128
PER_DEVICE=4
source "$(dirname "$0")/../launch_recipe.sh" "$@"
