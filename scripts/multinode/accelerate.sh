#!/usr/bin/env bash
# Multi-node `vistune train` with `accelerate launch`: run the same command on every node, changing MACHINE_RANK.
#   NUM_MACHINES=2 MACHINE_RANK=0 MAIN_PROCESS_IP=10.0.0.1 GPUS_PER_NODE=8 scripts/multinode/accelerate.sh CONFIG [key=value ...]
# Env: NUM_MACHINES, MACHINE_RANK (0 on the main node), MAIN_PROCESS_IP (the main node's address),
#      MAIN_PROCESS_PORT (default 29500), GPUS_PER_NODE (default 8), GLOBAL_BATCH (optional; keeps it).
# DeepSpeed comes from the recipe's `deepspeed:` JSON through the HF Trainer; precision from optim.bf16.
source "$(dirname "$0")/common.sh"
: "${NUM_MACHINES:?set NUM_MACHINES}" "${MACHINE_RANK:?set MACHINE_RANK}" "${MAIN_PROCESS_IP:?set MAIN_PROCESS_IP}"
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
WORLD=$(( GPUS_PER_NODE * NUM_MACHINES ))
ACCUM=$(grad_accum_for "$WORLD")
exec accelerate launch --multi_gpu --num_machines "$NUM_MACHINES" --machine_rank "$MACHINE_RANK" \
  --main_process_ip "$MAIN_PROCESS_IP" --main_process_port "${MAIN_PROCESS_PORT:-29500}" \
  --num_processes "$WORLD" --mixed_precision no --dynamo_backend no \
  -m vistune.cli train "$CONFIG" ${ACCUM:+"$ACCUM"} "${OVERRIDES[@]}"
