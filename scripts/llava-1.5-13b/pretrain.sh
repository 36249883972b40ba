#!/usr/bin/env bash
# LLaVA-1.5-13B stage 1 (projector alignment on LCS-558K) with the published hyper-parameters (configs/llava-1.5-13b/pretrain.yaml).
# Usage:   scripts/llava-1.5-13b/pretrain.sh [key=value ...]      e.g. data.path=/data/x.json output_dir=runs/x
# Env:     NUM_GPUS (per node, default 8); LAUNCHER=deepspeed (default) or accelerate; HOSTFILE for multi-node
#          DeepSpeed runs (see scripts/launch_recipe.sh). The global batch stays at the published 256: grad_accum = 256 / (32 x NUM_GPUS x nodes).
# Resume:  rerun the same command; resume=auto continues from the newest complete checkpoint.
CONFIG=configs/llava-1.5-13b/pretrain.yaml
GLOBAL_BATCH=256
PER_DEVICE=32
source "$(dirname "$0")/../launch_recipe.sh" "$@"
