#!/usr/bin/env bash
# LLaVA-1.5-7B stage 2 (LoRA r 128 + projector on mix665k) with the published hyper-parameters (configs/llava-1.5-7b/finetune_lora.yaml).
# Usage:   scripts/llava-1.5-7b/finetune_lora.sh [key=value ...]      e.g. data.path=/data/x.json output_dir=runs/x
# Env:     NUM_GPUS (per node, default 8); LAUNCHER=deepspeed (default) or accelerate; HOSTFILE for multi-node
#          DeepSpeed runs. The global batch stays at the published 128: grad_accum = 128 / (16 x NUM_GPUS x nodes).
# Resume:  rerun the same command; resume=auto continues from the newest complete checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."

CONFIG=configs/llava-1.5-7b/finetune_lora.yaml
NUM_GPUS=${NUM_GPUS:-8}
NUM_NODES=${NUM_NODES:-1}
GLOBAL_BATCH=128
PER_DEVICE=16
GRAD_ACCUM=$(( GLOBAL_BATCH / (PER_DEVICE * NUM_GPUS * NUM_NODES) ))
if (( GRAD_ACCUM < 1 )); then GRAD_ACCUM=1; fi

if [[ "${LAUNCHER:-deepspeed}" == accelerate ]]; then
  exec accelerate launch --multi_gpu --num_processes $(( NUM_GPUS * NUM_NODES )) --num_machines "$NUM_NODES" \
    -m vistune.cli train "$CONFIG" optim.grad_accum="$GRAD_ACCUM" "$@"
else
  exec deepspeed ${HOSTFILE:+--hostfile "$HOSTFILE"} --num_gpus "$NUM_GPUS" --no_local_rank \
    --module vistune.cli train "$CONFIG" optim.grad_accum="$GRAD_ACCUM" "$@"
fi
