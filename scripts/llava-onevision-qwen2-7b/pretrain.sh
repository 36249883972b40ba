#!/usr/bin/env bash
# llava-onevision-qwen2-7b pretrain with the published hyper-parameters (configs/llava-onevision-qwen2-7b/pretrain.yaml; its header cites the source).
# Usage:   scripts/llava-onevision-qwen2-7b/pretrain.sh [key=value ...]
# Env:     NUM_GPUS (per node, default 8); LAUNCHER=deepspeed (default) or accelerate; HOSTFILE for multi-node
#          DeepSpeed runs (see scripts/launch_recipe.sh). The global batch stays at 256: grad_accum = 256 / (16 x NUM_GPUS x nodes).
# Resume:  rerun the same command; resume=auto continues from the newest complete checkpoint.
CONFIG=configs/llava-onevision-qwen2-7b/pretrain.yaml
GLOBAL_BATCH=256
PER_DEVICE=16
source "$(dirname "$0")/../launch_recipe.sh" "$@"
